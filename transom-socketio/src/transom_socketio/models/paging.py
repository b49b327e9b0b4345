"""Keyset paging, newest first: one page of documents and the id to ask for the next.

A list endpoint answers ``{"<plural>": [...], "next": "<id>" | null}``; the client asks
for the next page with ``?before=<next>``. One more document than the page holds is
fetched to know whether there is a next page without counting the collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from ..db import Collection


@dataclass(frozen=True)
class Page:
    """Documents, newest first, and the ``before`` of the next page (None: the last)."""

    documents: list[dict[str, Any]]
    next: str | None


async def newest_first(
    collection: Collection,
    query: dict[str, Any],
    *,
    before: ObjectId | None,
    limit: int,
    projection: dict[str, Any] | None = None,
) -> Page:
    """Up to ``limit`` documents matching ``query`` created before the one ``before``."""
    if before is not None:
        older = {"_id": {"$lt": before}}
        query = {"$and": [query, older]} if query else older
    cursor = collection.find(query, projection=projection).sort("_id", -1).limit(limit + 1)
    found = [doc async for doc in cursor]
    page = found[:limit]
    return Page(page, str(page[-1]["_id"]) if len(found) > limit else None)
