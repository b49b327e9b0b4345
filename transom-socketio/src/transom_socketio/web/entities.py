"""Generic REST handlers serving every entity at ``/api/v1/db/<name>[/<id>]``.

Reads are limited to what ``entity.visible_to(user)`` allows; only the owner may
change or delete a document. Writes run the entity's action hooks around them.
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId
from pydantic import create_model

from .. import db
from ..auth.users import parse_object_id
from ..db import Collection
from ..models import store
from ..models.actions import ActionContext, Actions, check_action_modules, load_actions
from ..models.base import Entity
from ..models.errors import ModelError, NotFound
from ..shapes import OBJECT_ID_IN, ObjectIdOut, PublicShape
from .base import AuthenticatedHandler
from .errors import ApiError, bad_request, forbidden, not_found, too_many_requests
from .operations import Operation, Response, envelope

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A document's version (models/store.py), in the answers that carry it and in If-Match.
ETAG_HEADER = {
    "ETag": {
        "description": "the document's version, for `If-Match`",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    }
}
IF_MATCH_PARAMETER = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "change only if the document is still at this `ETag` (else 412)",
    "schema": {"type": "string"},
}
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
PAGE_LIMIT = re.compile(r"[0-9]{1,6}")


class EntityHandler(AuthenticatedHandler):
    def initialize(  # type: ignore[override]
        self, entity: Entity, actions: Actions, entities: dict[str, Entity]
    ) -> None:
        super().initialize()
        self.entity = entity
        self.actions = actions
        self.entities = entities

    async def check_request(self) -> None:
        await super().check_request()
        if self.request.method in WRITE_METHODS:
            limits = self.services.write_limits
            retry_after = limits.per_user.hit(self.current_user.user_id)
            if retry_after is not None:
                raise too_many_requests(retry_after, "too many writes, slow down")

    @property
    def collection(self) -> Collection:
        return self.services.database[self.entity.collection]

    def action_context(self) -> ActionContext:
        return ActionContext(
            registry=self.registry,
            services=self.services,
            user=self.current_user,
            db=self.services.database,
            entity=self.entity,
        )

    async def check_references(self, values: dict[str, Any]) -> None:
        """Each id names a user, or a document of its entity the caller may see."""
        users = self.services.users
        database = self.services.database
        for name, target in self.entity.references().items():
            value = values.get(name)
            if value is None:
                continue
            if target == "user":
                found = await users.exists(value)
            else:
                other = self.entities[target]
                query = {"$and": [{"_id": value}, other.visible_to(self.current_user)]}
                found = await database[other.collection].find_one(query) is not None
            if not found:
                raise NotFound(f"{name}: no such {target}", field=name)

    def respond(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_header("ETag", store.etag(doc))
        self.write_json({self.entity.name: self.entity.to_public(doc)}, status=status)


class EntityCollectionHandler(EntityHandler):
    """``GET`` lists what the caller may see, newest first; ``POST`` creates."""

    @classmethod
    def openapi_operations(cls, kwargs: dict[str, Any]) -> dict[str, Operation]:
        entity: Entity = kwargs["entity"]
        name, title, public = entity.name, entity.title, entity.public_model
        page_fields: dict[str, Any] = {
            entity.plural: (list[public], ...),  # type: ignore[valid-type]
            "next": (ObjectIdOut | None, ...),
        }
        page = create_model(f"{title}Page", __base__=PublicShape, **page_fields)
        limit = {
            "type": "integer",
            "minimum": 1,
            "maximum": entity.max_page_size,
            "default": entity.page_size,
        }
        return {
            "get": Operation(
                f"The {entity.plural} the caller may see, newest first",
                {200: Response("one page", page)},
                auth=True,
                errors=dict.fromkeys((400, 503), ""),
                operation_id=f"list{title}",
                parameters=(
                    {"name": "limit", "in": "query", "schema": limit},
                    {
                        "name": "before",
                        "in": "query",
                        "description": "the `next` of the previous page",
                        "schema": OBJECT_ID_IN,
                    },
                ),
            ),
            "post": Operation(
                f"Create a {name}",
                {
                    201: Response(
                        "created", envelope(name, public, f"{title}Envelope"), headers=ETAG_HEADER
                    )
                },
                body=entity.new_model,
                auth=True,
                errors=dict.fromkeys((404, 429, 503), ""),
                operation_id=f"create{title}",
            ),
        }

    async def get(self) -> None:
        limit = self._limit()
        query = self.entity.visible_to(self.current_user)
        before = self.get_query_argument("before", None)
        if before is not None:
            before_id = parse_object_id(before)
            if before_id is None:
                raise bad_request("before must be an id (24 hex digits)", field="before")
            query = {"$and": [query, {"_id": {"$lt": before_id}}]}
        cursor = self.collection.find(query).sort("_id", -1).limit(limit + 1)
        docs = [doc async for doc in cursor]
        page, more = docs[:limit], len(docs) > limit
        self.write_json(
            {
                self.entity.plural: [self.entity.to_public(doc) for doc in page],
                "next": str(page[-1]["_id"]) if more else None,
            }
        )

    def _limit(self) -> int:
        raw = self.get_query_argument("limit", None)
        if raw is None:
            return self.entity.page_size
        if not PAGE_LIMIT.fullmatch(raw) or not 1 <= int(raw) <= self.entity.max_page_size:
            raise bad_request(
                f"limit must be an integer from 1 to {self.entity.max_page_size}", field="limit"
            )
        return int(raw)

    async def post(self) -> None:
        values = self.entity.parse_new(self.json_body())
        await self.check_references(values)
        doc = store.new_document(self.entity.new_document(values, self.current_user))
        ctx = self.action_context()
        await self.actions.before("insert", ctx, doc)
        result = await self.collection.insert_one(doc)
        doc["_id"] = result.inserted_id
        await self.actions.after("insert", ctx, doc)
        self.respond(doc, status=201)


class EntityItemHandler(EntityHandler):
    """``GET``, ``PUT`` (owner only) and ``DELETE`` (owner only) of one document.

    ``PUT`` changes only the fields its body names, atomically (models/store.py);
    with ``If-Match``, ``PUT`` and ``DELETE`` act only if the document is still at
    that version, else 412 and nothing changes.
    """

    @classmethod
    def openapi_operations(cls, kwargs: dict[str, Any]) -> dict[str, Operation]:
        entity: Entity = kwargs["entity"]
        name, title, owner = entity.name, entity.title, entity.owner_field
        one = envelope(name, entity.public_model, f"{title}Envelope")
        id_parameter = {"name": "id", "in": "path", "required": True, "schema": OBJECT_ID_IN}
        common: dict[str, Any] = {"auth": True, "parameters": (id_parameter,)}
        return {
            "get": Operation(
                f"One {name}",
                {200: Response(f"the {name}", one, headers=ETAG_HEADER)},
                errors=dict.fromkeys((400, 404, 503), ""),
                operation_id=f"get{title}",
                **common,
            ),
            "put": Operation(
                f"Change a {name} (its {owner} only)",
                {200: Response(f"the changed {name}", one, headers=ETAG_HEADER)},
                body=entity.changes_model,
                errors=dict.fromkeys((403, 404, 412, 429, 503), ""),
                operation_id=f"update{title}",
                description="Changes only the fields the body names, atomically. With "
                "`If-Match` (an `ETag` of this document), only if it is still at that "
                "version, else 412.",
                auth=True,
                parameters=(id_parameter, IF_MATCH_PARAMETER),
            ),
            "delete": Operation(
                f"Delete a {name} (its {owner} only)",
                {204: Response("deleted")},
                errors=dict.fromkeys((400, 403, 404, 412, 429, 503), ""),
                operation_id=f"delete{title}",
                description="With `If-Match` (an `ETag` of this document), only if it is "
                "still at that version, else 412 and nothing is deleted.",
                auth=True,
                parameters=(id_parameter, IF_MATCH_PARAMETER),
            ),
        }

    async def _visible(self, raw_id: str) -> dict[str, Any]:
        oid = parse_object_id(raw_id)
        if oid is None:
            raise ApiError(400, "invalid_id", "the id must be 24 hex digits")
        query = {"$and": [{"_id": oid}, self.entity.visible_to(self.current_user)]}
        doc = await self.collection.find_one(query)
        if doc is None:
            raise not_found(self.entity.name)
        return doc

    async def _owned(self, raw_id: str) -> dict[str, Any]:
        doc = await self._visible(raw_id)
        if self.entity.owner_id(doc) != self.current_user.user_id:
            raise forbidden(
                f"only the {self.entity.owner_field} may change this {self.entity.name}"
            )
        return doc

    async def get(self, raw_id: str) -> None:
        self.respond(await self._visible(raw_id))

    async def put(self, raw_id: str) -> None:
        changes = self.entity.parse_changes(self.json_body())
        accepted = store.accepted_versions(self.request.headers.get("If-Match"))
        existing = await self._owned(raw_id)
        self._check_version(existing, accepted)
        await self.check_references(changes)
        doc = {**existing, **changes, "updated_at": db.now()}
        ctx = self.action_context()
        await self.actions.before("update", ctx, doc)
        # The fields the request named and those the before_update hook set: only these.
        named = {key: value for key, value in doc.items() if existing.get(key, ...) != value}
        owned_by = {f"{self.entity.owner_field}._id": ObjectId(self.current_user.user_id)}
        stored = await store.update_fields(
            self.collection, owned_by, existing["_id"], named, accepted
        )
        if stored is None:  # changed or deleted since it was read
            raise precondition_failed() if accepted is not None else not_found(self.entity.name)
        await self.actions.after("update", ctx, stored)
        self.respond(stored)

    def _check_version(self, doc: dict[str, Any], accepted: frozenset[int] | None) -> None:
        try:
            store.check(doc, accepted)
        except store.PreconditionFailed:
            raise precondition_failed() from None

    async def delete(self, raw_id: str) -> None:
        accepted = store.accepted_versions(self.request.headers.get("If-Match"))
        existing = await self._owned(raw_id)
        self._check_version(existing, accepted)
        ctx = self.action_context()
        await self.actions.before("delete", ctx, existing)
        owned_by = {f"{self.entity.owner_field}._id": ObjectId(self.current_user.user_id)}
        deleted = await store.delete_document(self.collection, owned_by, existing["_id"], accepted)
        if deleted:
            await self.actions.after("delete", ctx, existing)
        elif accepted is not None:  # changed (or deleted) since it was read
            raise precondition_failed()
        self.set_status(204)
        self.finish()


def precondition_failed() -> ApiError:
    return ApiError(
        412,
        "precondition_failed",
        "the document changed since you read it: GET it again for its current ETag",
    )


def entity_routes(
    entities: tuple[Entity, ...], actions_package: str
) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes of ``entities``, once they and their action modules (the modules of
    ``actions_package``, named after the entities) pass the start-up checks
    (``ModelError``, one line, for a mistake)."""
    by_name = {entity.name: entity for entity in entities}
    if len(by_name) != len(entities):
        names = [entity.name for entity in entities]
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ModelError(f"two entities are named {twice[0]!r}")
    check_action_modules(actions_package, set(by_name))
    routes: list[tuple[str, type, dict[str, Any]]] = []
    for entity in entities:
        entity.check(set(by_name))
        kwargs = {
            "entity": entity,
            "actions": load_actions(actions_package, entity.name),
            "entities": by_name,
        }
        routes.append((rf"/api/v1/db/{entity.name}", EntityCollectionHandler, kwargs))
        routes.append((rf"/api/v1/db/{entity.name}/([^/]+)", EntityItemHandler, kwargs))
    return routes
