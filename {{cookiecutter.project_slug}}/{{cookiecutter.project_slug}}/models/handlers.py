"""Generic REST handlers serving every entity at ``/api/v1/db/<name>[/<id>]``.

Reads are limited to what ``entity.visible_to(user)`` allows; only the owner may
change or delete a document. Writes run the entity's action hooks around them.
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId

from .. import db
from ..auth.users import parse_object_id
from ..db import Collection
from ..web.base import AuthenticatedHandler
from ..web.errors import ApiError, bad_request, forbidden, not_found, too_many_requests
from . import store
from .actions import ActionContext, Actions, load_actions
from .base import Entity

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
PAGE_LIMIT = re.compile(r"[0-9]{1,6}")


class EntityHandler(AuthenticatedHandler):
    def initialize(self, entity: Entity, actions: Actions) -> None:  # type: ignore[override]
        super().initialize()
        self.entity = entity
        self.actions = actions

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
            user=self.current_user,
            db=self.services.database,
            entity=self.entity,
        )

    async def check_references(self, values: dict[str, Any]) -> None:
        users = self.services.users
        for field in self.entity.fields:
            value = values.get(field.name)
            if field.reference == "user" and value is not None and not await users.exists(value):
                raise ApiError(404, "not_found", f"{field.name}: no such user", field=field.name)

    def respond(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_header("ETag", store.etag(doc))
        self.write_json({self.entity.name: self.entity.to_public(doc)}, status=status)


class EntityCollectionHandler(EntityHandler):
    """``GET`` lists what the caller may see, newest first; ``POST`` creates."""

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
    with ``If-Match`` only if the document is still at that version, else 412.
    """

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
        existing = await self._owned(raw_id)
        ctx = self.action_context()
        await self.actions.before("delete", ctx, existing)
        result = await self.collection.delete_one({"_id": existing["_id"]})
        if result.deleted_count:
            await self.actions.after("delete", ctx, existing)
        self.set_status(204)
        self.finish()


def precondition_failed() -> ApiError:
    return ApiError(
        412,
        "precondition_failed",
        "the document changed since you read it: GET it again for its current ETag",
    )


def entity_routes(entities: tuple[Entity, ...]) -> list[tuple[str, type, dict[str, Any]]]:
    routes: list[tuple[str, type, dict[str, Any]]] = []
    for entity in entities:
        kwargs = {"entity": entity, "actions": load_actions(entity.name)}
        routes.append((rf"/api/v1/db/{entity.name}", EntityCollectionHandler, kwargs))
        routes.append((rf"/api/v1/db/{entity.name}/([^/]+)", EntityItemHandler, kwargs))
    return routes
