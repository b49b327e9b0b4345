"""Versioned documents: atomic, conditional updates of entity documents.

Every document carries a ``version``: 1 when it is created, one more on each update.
Responses show it as a strong ``ETag`` (``"3"``), and a client that sends it back in
``If-Match`` changes the document only if nobody changed it since it read it.

An update is ONE ``find_one_and_update``: its filter names the document, the entity's
access rule for the caller (models/access.py: by default, its owner) and (with
``If-Match``) the versions the client accepts; it ``$set``s only the fields
the request names and ``$inc``s the version. Two updates of different fields therefore
both land, and of two updates made from the same version only one does.

A delete with ``If-Match`` is one ``delete_one`` with the same filter: it deletes
the document only if it is still at a version the client accepts.

Documents stored before versions existed have none: they count as version 0 (ETag
``"0"``), and their first update makes them version 1.
"""

from __future__ import annotations

import re
from typing import Any, cast

from pymongo import ReturnDocument

VERSION = "version"
# One entity tag of an If-Match list: "3" (strong). Weak tags (W/"3") never match
# If-Match, which compares strongly (RFC 9110 §13.1.1).
_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


class PreconditionFailed(Exception):
    """The document's version is not one the request's If-Match names."""


def version_of(doc: dict[str, Any]) -> int:
    return int(doc.get(VERSION) or 0)


def etag(doc: dict[str, Any]) -> str:
    return f'"{version_of(doc)}"'


def accepted_versions(if_match: str | None) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts; None when any version will do.

    A malformed header, or one of weak tags only, accepts no version: the update
    answers 412 rather than overwrite blindly.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    versions = set()
    position = 0
    while position < len(if_match):
        tag = _TAG.match(if_match, position)
        if tag is None:
            return frozenset()
        weak, opaque = tag.groups()
        if not weak and opaque.isascii() and opaque.isdigit() and len(opaque) < 19:
            versions.add(int(opaque))
        position = tag.end()
    return frozenset(versions)


def check(doc: dict[str, Any], accepted: frozenset[int] | None) -> None:
    """Raise PreconditionFailed unless ``doc``'s version is accepted."""
    if accepted is not None and version_of(doc) not in accepted:
        raise PreconditionFailed


def new_document(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as version 1, ready to insert."""
    return {**doc, VERSION: 1}


def _matching(
    owned_by: dict[str, Any], doc_id: Any, accepted: frozenset[int] | None
) -> dict[str, Any]:
    """The filter of the document ``doc_id`` matching ``owned_by`` and, with
    ``accepted``, at one of those versions."""
    query: dict[str, Any] = {"_id": doc_id, **owned_by}
    if accepted is not None:
        # A document without a version is version 0; {"$in": [None]} finds it.
        versions = cast(list[int | None], sorted(accepted))
        query[VERSION] = {"$in": [*versions, None] if 0 in accepted else versions}
    return query


async def update_fields(
    collection: Any,
    owned_by: dict[str, Any],
    doc_id: Any,
    fields: dict[str, Any],
    accepted: frozenset[int] | None,
) -> dict[str, Any] | None:
    """Set ``fields`` of the document ``doc_id`` matching ``owned_by``, atomically.

    Returns the document as stored after the update, or None when no document
    matched: it is gone, no longer matches ``owned_by`` (the caller's access rule:
    a new owner or assignee...), or (with ``accepted``) has another version.
    """
    changes = {name: value for name, value in fields.items() if name not in ("_id", VERSION)}
    return await collection.find_one_and_update(
        _matching(owned_by, doc_id, accepted),
        {"$set": changes, "$inc": {VERSION: 1}},
        return_document=ReturnDocument.AFTER,
    )


async def delete_document(
    collection: Any, owned_by: dict[str, Any], doc_id: Any, accepted: frozenset[int] | None
) -> bool:
    """Delete the document ``doc_id`` matching ``owned_by`` (and, with ``accepted``,
    still at one of those versions) in one operation; False when none matched."""
    result = await collection.delete_one(_matching(owned_by, doc_id, accepted))
    return bool(result.deleted_count)
