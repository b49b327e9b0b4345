"""Generic REST handlers serving every entity at ``/api/v1/db/<name>[/<id>]``.

The entity's access policy (``Entity.read``/``create``/``update``/``delete``,
models/access.py) is part of each query: a list or a GET finds only what
``entity.readable_by(user)`` allows, and an update (a delete) filters on both
``readable_by`` and ``changeable_by`` (``deletable_by``), so a write never lands on a
document the caller may not change, even if its owner or assignee changed since the
handler read it. A refused write answers 403 when the caller may read the document,
else 404 (no leak of its existence); a refused creation 403. Every route needs a
signed-in caller, except the GETs of an entity whose ``read`` allows ``ANYONE``: a
request without a token reads what ``entity.readable_anonymously()`` allows. Writes
run the entity's action hooks around them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import create_model

from .. import db
from ..auth.tokens import Principal
from ..auth.users import parse_object_id
from ..db import Collection
from ..models import store
from ..models.access import MATCHES_NOTHING, SIGNED_IN, Query
from ..models.actions import ActionContext, Actions, check_action_modules, load_actions
from ..models.base import Entity
from ..models.errors import ModelError, NotFound
from ..models.paging import newest_first
from ..shapes import OBJECT_ID_IN, ObjectIdOut, PublicShape
from .base import AuthenticatedHandler
from .errors import ApiError, forbidden, not_found, too_many_requests
from .operations import Operation, Response, envelope

__all__ = ["entity_routes"]

# An action hook may refuse a write that conflicts with the data (models.errors.Conflict).
HOOK_CONFLICT = "`conflict`: an action hook refused it, as conflicting with the data."

# The writes an entity's policy rules on an existing document.
Write = Literal["update", "delete"]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The methods a caller without a token may call when ``read`` allows ANYONE.
READ_METHODS = frozenset({"GET", "HEAD"})
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
# The 401 of an operation that takes a token but does not need one.
BAD_JWT_401 = (
    "`invalid_token`: the JWT given is malformed, forged, expired or revoked (without an "
    "Authorization header, the request is answered as for anyone)."
)
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.


class EntityHandler(AuthenticatedHandler):
    # The caller: None for a GET without a token, where ``read`` allows ANYONE (the
    # writes, which always need one, use ``current_user``).
    caller: Principal | None

    def initialize(  # type: ignore[override]
        self, entity: Entity, actions: Actions, entities: dict[str, Entity]
    ) -> None:
        super().initialize()
        self.entity = entity
        self.actions = actions
        self.entities = entities

    async def check_request(self) -> None:
        if self._anonymous_read():
            # The checks of every request, without AuthenticatedHandler's sign-in.
            await super(AuthenticatedHandler, self).check_request()
            self.caller = None
            return
        await super().check_request()
        self.caller = self.current_user
        if self.request.method in WRITE_METHODS:
            limits = self.services.write_limits
            retry_after = limits.per_user.hit(self.current_user.user_id)
            if retry_after is not None:
                raise too_many_requests(retry_after, "too many writes, slow down")

    def _anonymous_read(self) -> bool:
        """A read without a token, of an entity that ANYONE may read."""
        return (
            self.request.method in READ_METHODS
            and not self.request.headers.get("Authorization")
            and self.entity.readable_anonymously() is not None
        )

    def readable(self) -> Query:
        """The filter of the documents the caller may read (signed in or not)."""
        if self.caller is None:
            anonymous = self.entity.readable_anonymously()
            return dict(MATCHES_NOTHING) if anonymous is None else anonymous
        return self.entity.readable_by(self.caller)

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
                query = {"$and": [{"_id": value}, other.readable_by(self.current_user)]}
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
        create = entity.access("create")
        return {
            "get": Operation(
                f"The {entity.plural} the caller may see, newest first",
                {200: Response("one page", page)},
                auth=True,
                anonymous=anyone_reads(entity),
                errors=dict.fromkeys((400, 503), "") | optional_token_errors(entity),
                operation_id=f"list{title}",
                description=f"Who may read a {name}: {entity.access('read')}. "
                f"The list holds no other.{token_note(entity)}",
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
                f"Create a {name}"
                if create == SIGNED_IN.describe(entity)
                else f"Create a {name} ({create})",
                {
                    201: Response(
                        "created", envelope(name, public, f"{title}Envelope"), headers=ETAG_HEADER
                    )
                },
                body=entity.new_model,
                auth=True,
                errors={
                    **dict.fromkeys((404, 429, 503), ""),
                    403: f"`forbidden`: the caller may not create a {name} ({create}), "
                    "or an action hook refused it.",
                    409: HOOK_CONFLICT,
                },
                operation_id=f"create{title}",
                description=f"Who may create a {name}: {create}. Its creator is its "
                f"{entity.owner_field}.",
            ),
        }

    async def get(self) -> None:
        before, limit = self.page_arguments(self.entity.page_size, self.entity.max_page_size)
        page = await newest_first(self.collection, self.readable(), before=before, limit=limit)
        self.write_json(
            {
                self.entity.plural: [self.entity.to_public(doc) for doc in page.documents],
                "next": page.next,
            }
        )

    async def post(self) -> None:
        if not self.entity.may_create(self.current_user):
            who = self.entity.access("create")
            raise forbidden(f"you may not create a {self.entity.name} ({who})")
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
    """``GET``, ``PUT`` and ``DELETE`` of one document, as the entity's policy allows
    (by default: the owner only for ``PUT`` and ``DELETE``).

    ``PUT`` changes only the fields its body names, atomically (models/store.py);
    with ``If-Match``, ``PUT`` and ``DELETE`` act only if the document is still at
    that version, else 412 and nothing changes.
    """

    @classmethod
    def openapi_operations(cls, kwargs: dict[str, Any]) -> dict[str, Operation]:
        entity: Entity = kwargs["entity"]
        name, title = entity.name, entity.title
        read, update, delete = (
            entity.access("read"),
            entity.access("update"),
            entity.access("delete"),
        )
        one = envelope(name, entity.public_model, f"{title}Envelope")
        id_parameter = {"name": "id", "in": "path", "required": True, "schema": OBJECT_ID_IN}
        return {
            "get": Operation(
                f"One {name}",
                {200: Response(f"the {name}", one, headers=ETAG_HEADER)},
                errors=dict.fromkeys((400, 404, 503), "") | optional_token_errors(entity),
                operation_id=f"get{title}",
                description=f"Who may read a {name}: {read}"
                f"{'.' if anyone_reads(entity) else '; to anyone else, 404.'}{token_note(entity)}",
                parameters=(id_parameter,),
                auth=True,
                anonymous=anyone_reads(entity),
            ),
            "put": Operation(
                f"Change a {name} ({update})",
                {200: Response(f"the changed {name}", one, headers=ETAG_HEADER)},
                body=entity.changes_model,
                errors={
                    **dict.fromkeys((404, 412, 429, 503), ""),
                    403: f"`forbidden`: the caller may read this {name} but not change it "
                    f"({update}), or an action hook refused the change.",
                    409: HOOK_CONFLICT,
                },
                operation_id=f"update{title}",
                description=f"Who may change a {name}: {update}; a caller who may read "
                "it but not change it gets 403, one who may not read it 404. Changes only "
                "the fields the body names, atomically. With `If-Match` (an `ETag` of this "
                "document), only if it is still at that version, else 412.",
                auth=True,
                parameters=(id_parameter, IF_MATCH_PARAMETER),
            ),
            "delete": Operation(
                f"Delete a {name} ({delete})",
                {204: Response("deleted")},
                errors={
                    **dict.fromkeys((400, 404, 412, 429, 503), ""),
                    403: f"`forbidden`: the caller may read this {name} but not delete it "
                    f"({delete}), or an action hook refused.",
                    409: HOOK_CONFLICT,
                },
                operation_id=f"delete{title}",
                description=f"Who may delete a {name}: {delete}; a caller who may read "
                "it but not delete it gets 403, one who may not read it 404. With "
                "`If-Match` (an `ETag` of this document), only if it is still at that "
                "version, else 412 and nothing is deleted.",
                auth=True,
                parameters=(id_parameter, IF_MATCH_PARAMETER),
            ),
        }

    def _readable(self) -> Query:
        return self.readable()

    def _allowed(self, action: Write) -> Query:
        """The filter of the documents the caller may ``action`` ("update" or "delete"):
        those they may read and the entity's rule lets them change or delete."""
        user = self.current_user
        rule = (
            self.entity.changeable_by(user)
            if action == "update"
            else self.entity.deletable_by(user)
        )
        return {"$and": [self._readable(), rule]}

    def _object_id(self, raw_id: str) -> Any:
        oid = parse_object_id(raw_id)
        if oid is None:
            raise ApiError(400, "invalid_id", "the id must be 24 hex digits")
        return oid

    async def _find(self, oid: Any, allowed: Query) -> dict[str, Any] | None:
        return await self.collection.find_one({"$and": [{"_id": oid}, allowed]})

    async def _visible(self, raw_id: str) -> dict[str, Any]:
        doc = await self._find(self._object_id(raw_id), self._readable())
        if doc is None:
            raise not_found(self.entity.name)
        return doc

    async def _allowed_doc(self, raw_id: str, action: Write) -> dict[str, Any]:
        """The document, if the caller may ``action`` it: else 403 if they may read it
        (it exists for them), 404 if not."""
        oid = self._object_id(raw_id)
        doc = await self._find(oid, self._allowed(action))
        if doc is None:
            raise await self._refusal(oid, action)
        return doc

    async def _refusal(self, oid: Any, action: Write) -> ApiError:
        """Why the caller may not ``action`` the document ``oid``, as it is now."""
        if await self._find(oid, self._readable()) is None:
            return not_found(self.entity.name)
        verb = "change" if action == "update" else "delete"
        who = self.entity.access(action)
        return forbidden(f"you may not {verb} this {self.entity.name} ({who})")

    async def _unmatched(
        self, oid: Any, action: Write, accepted: frozenset[int] | None
    ) -> ApiError | None:
        """Why a write matched nothing although the handler had found the document
        allowed: it changed in between so that the caller may no longer read it (404)
        or act on it (403), or its version moved (412); None if it was deleted."""
        if await self.collection.find_one({"_id": oid}, {"_id": 1}) is None:
            return None
        if await self._find(oid, self._allowed(action)) is None:
            return await self._refusal(oid, action)
        if accepted is not None:
            return precondition_failed()
        # Allowed again by now: it was out of the caller's reach at the write.
        return forbidden(f"this {self.entity.name} changed as you wrote it: try again")

    async def get(self, raw_id: str) -> None:
        self.respond(await self._visible(raw_id))

    async def put(self, raw_id: str) -> None:
        changes = self.entity.parse_changes(self.json_body())
        accepted = store.accepted_versions(self.request.headers.get("If-Match"))
        existing = await self._allowed_doc(raw_id, "update")
        self._check_version(existing, accepted)
        await self.check_references(changes)
        doc = {**existing, **changes, "updated_at": db.now()}
        ctx = self.action_context()
        await self.actions.before("update", ctx, doc)
        # The fields the request named and those the before_update hook set: only these.
        named = {key: value for key, value in doc.items() if existing.get(key, ...) != value}
        # The rule is in the filter: a document whose owner (assignee...) changed since
        # it was read matches nothing, and nothing changes.
        stored = await store.update_fields(
            self.collection, self._allowed("update"), existing["_id"], named, accepted
        )
        if stored is None:  # changed or deleted since it was read
            refusal = await self._unmatched(existing["_id"], "update", accepted)
            if refusal is None:  # deleted since it was read
                refusal = (
                    precondition_failed() if accepted is not None else not_found(self.entity.name)
                )
            raise refusal
        await self.actions.after("update", ctx, stored)
        self.respond(stored)

    def _check_version(self, doc: dict[str, Any], accepted: frozenset[int] | None) -> None:
        try:
            store.check(doc, accepted)
        except store.PreconditionFailed:
            raise precondition_failed() from None

    async def delete(self, raw_id: str) -> None:
        accepted = store.accepted_versions(self.request.headers.get("If-Match"))
        existing = await self._allowed_doc(raw_id, "delete")
        self._check_version(existing, accepted)
        ctx = self.action_context()
        await self.actions.before("delete", ctx, existing)
        deleted = await store.delete_document(
            self.collection, self._allowed("delete"), existing["_id"], accepted
        )
        if deleted:
            await self.actions.after("delete", ctx, existing)
        else:  # changed (or deleted) since it was read
            refusal = await self._unmatched(existing["_id"], "delete", accepted)
            if refusal is not None:
                raise refusal
            if accepted is not None:  # deleted by another request: not at that version
                raise precondition_failed()
        self.set_status(204)
        self.finish()


def anyone_reads(entity: Entity) -> bool:
    """Whether the GETs of ``entity`` answer without a token (``read`` allows ANYONE)."""
    return entity.readable_anonymously() is not None


def optional_token_errors(entity: Entity) -> dict[int, str]:
    """The 401 of a GET that needs no token: for an invalid one only."""
    return {401: BAD_JWT_401} if anyone_reads(entity) else {}


def token_note(entity: Entity) -> str:
    """What a GET's description says of tokens when ANYONE reads."""
    return " No token needed; one given must be valid (else 401)." if anyone_reads(entity) else ""


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
