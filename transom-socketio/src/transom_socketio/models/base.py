"""What an entity is: its fields, who owns it, who may read, create, change or delete
it (its access policy, models/access.py), how it looks in JSON.

An entity module (``models/<name>.py``) defines a subclass of ``Entity`` and an
instance of it called ``ENTITY``; the generic REST handlers serve it at
``/api/v1/db/<name>`` once it is listed in ``models/__init__.py``. Its optional
action module ``models/actions/<name>.py`` holds the hooks.

The entity's fields are written once, as the pydantic model ``Fields`` (the body of
a creation). The body of an update (``<Name>Changes``: the same fields, all
optional, without ``create_only``), the public document (``<Name>``) and the JSON
Schemas of the OpenAPI document are derived from it.
"""

from __future__ import annotations

import re
import types
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .. import db
from ..auth.tokens import Principal
from ..db import IndexSpec
from ..shapes import DateTimeOut, ObjectIdOut, PublicShape, Ref, Shape, Text, explain
from .access import OWNER, SIGNED_IN, Query, Rule
from .errors import Invalid, ModelError
from .store import VERSION

__all__ = ["Entity"]

SUPPORTED = (
    "int, float, bool, Annotated[str, Text(...)] or Annotated[ObjectId, Ref(...)], "
    "optionally '| None'"
)


M = TypeVar("M", bound=BaseModel)

Action = Literal["read", "create", "update", "delete"]
# The methods that decide each action, in the order they are looked up: an entity that
# overrides one decides that action itself (``visible_to``: the former ``readable_by``).
ACCESS_METHODS: dict[Action, tuple[str, ...]] = {
    "read": ("readable_by", "visible_to"),
    "create": ("may_create",),
    "update": ("changeable_by",),
    "delete": ("deletable_by",),
}


def validated(model: type[M], body: dict[str, Any]) -> M:
    """``body`` checked by ``model``; ``Invalid`` naming the first field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        message, field = explain(error)
        raise Invalid(message, field=field) from None


def _changes_schema(schema: dict[str, Any]) -> None:
    # Absent means "unchanged": no defaults to show, and at least one field.
    schema["minProperties"] = 1
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class Changes(Shape):
    model_config = ConfigDict(json_schema_extra=_changes_schema)


class Owner(PublicShape):
    """The owner of a document as responses show it."""

    id: ObjectIdOut = Field(alias="_id")
    username: str | None


def field_kind(annotation: Any, metadata: list[Any]) -> tuple[Any, bool]:
    """(the response type of a field, whether it may be null); ModelError if unsupported."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional, annotation = True, rest[0] if len(rest) == 1 else annotation
    if get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata = [*metadata, *more]
    rules = [m for m in metadata if isinstance(m, Text | Ref)]
    if annotation is str and rules and isinstance(rules[0], Text):
        return str, optional
    if annotation is ObjectId and rules and isinstance(rules[0], Ref):
        return ObjectIdOut, optional
    if annotation in (int, float, bool) and not rules:
        return annotation, optional
    raise ModelError(f"unsupported field type {annotation!r}: use {SUPPORTED}")


# An entity's name: its route (/api/v1/db/<name>), its collection (<name>s), its schemas.
ENTITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def engine_collections() -> frozenset[str]:
    """The collections the engine keeps (accounts, tokens, limits, the outbox)."""
    from ..auth import nonces, revocations, throttle, users  # imported when checked
    from ..mail import transports

    names = (users, nonces, revocations, throttle, transports)
    return frozenset(module.COLLECTION for module in names)


class Entity:
    """Base class of entities; override the class attributes and, if needed, methods."""

    name: ClassVar[str]
    Fields: ClassVar[type[Shape]]
    # Fields set on creation only (absent from the update body).
    create_only: ClassVar[tuple[str, ...]] = ()
    # Keys of the default public document left out of responses (e.g. "updated_at").
    hidden: ClassVar[tuple[str, ...]] = ()
    owner_field: ClassVar[str] = "owner"
    # The access policy (models/access.py): who may read, create, change (PUT) and
    # delete a document. The handlers put each rule in the query itself; ``create``
    # takes only rules that need no document (SIGNED_IN, group(...), NOBODY).
    read: ClassVar[Rule] = OWNER
    create: ClassVar[Rule] = SIGNED_IN
    update: ClassVar[Rule] = OWNER
    delete: ClassVar[Rule] = OWNER
    page_size: ClassVar[int] = 50
    max_page_size: ClassVar[int] = 100

    @property
    def collection(self) -> str:
        return f"{self.name}s"

    @property
    def plural(self) -> str:
        """The key of the list in ``GET /api/v1/db/<name>`` responses."""
        return f"{self.name}s"

    @property
    def title(self) -> str:
        """``note_card`` → ``NoteCard``: the name of its schemas in the OpenAPI document."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    def references(self) -> dict[str, str]:
        """The fields that hold ids, and the entity (or ``"user"``) each names."""
        found: dict[str, str] = {}
        for name, info in self.Fields.model_fields.items():
            annotation, metadata = info.annotation, list(info.metadata)
            for arg in get_args(annotation):
                if get_origin(arg) is Annotated:
                    metadata += get_args(arg)[1:]
            found.update((name, m.entity) for m in metadata if isinstance(m, Ref))
        return found

    def check(self, known: set[str]) -> None:
        """Start-up checks (ModelError, one line): supported field types, existing
        references and create-only fields. ``known``: the names of every entity."""
        if not isinstance(self.name, str) or not ENTITY_NAME.fullmatch(self.name):
            raise ModelError(
                f"entity {self.name!r}: a name is 1-40 lower-case letters, digits or '_', "
                "starting with a letter"
            )
        if self.collection in engine_collections():
            # An entity named "user" read and wrote the accounts (found by a review).
            raise ModelError(
                f"entity {self.name}: its collection {self.collection!r} is the engine's: "
                "choose another name"
            )
        fields = getattr(self, "Fields", None)
        if not (isinstance(fields, type) and issubclass(fields, BaseModel)):
            raise ModelError(f"entity {self.name}: Fields must be a pydantic model (a Shape)")
        server = {"_id", "id", VERSION, self.owner_field, "created_at", "updated_at"}
        for name in sorted(server & set(fields.model_fields)):
            # The server sets these: a field of that name was overwritten on POST, and
            # a PUT of it forged the date or orphaned the document (found by a review).
            raise ModelError(f"entity {self.name}, field {name}: the server sets {name!r}")
        for name, info in fields.model_fields.items():
            try:
                field_kind(info.annotation, list(info.metadata))
            except ModelError as error:
                raise ModelError(f"entity {self.name}, field {name}: {error}") from None
        for name, target in self.references().items():
            if target != "user" and target not in known:
                raise ModelError(
                    f"entity {self.name}, field {name}: Ref({target!r}) names no entity "
                    f"(known: user, {', '.join(sorted(known))})"
                )
        for action in ACCESS_METHODS:
            self._check_rule(action)
        for name in self.create_only:
            if name not in fields.model_fields:
                raise ModelError(f"entity {self.name}: create_only names no field {name!r}")
        public = {*fields.model_fields, "_id", self.owner_field, "created_at", "updated_at"}
        for name in self.hidden:
            if name not in public:
                raise ModelError(f"entity {self.name}: hidden names no key {name!r}")
        _ = self.changes_model, self.public_model

    def _check_rule(self, action: Action) -> None:
        rule = getattr(self, action)
        if not isinstance(rule, Rule):
            raise ModelError(
                f"entity {self.name}: {action} must be a Rule (OWNER, SIGNED_IN, ANYONE, "
                f"NOBODY, group(...), user_field(...), Custom(...)), not {rule!r}"
            )
        rule.check(self)
        if action != "read" and rule.anonymous(self) is not None:
            raise ModelError(
                f"entity {self.name}: {action} may not allow ANYONE (only read may): "
                "use SIGNED_IN for any signed-in user"
            )
        if action == "create" and rule.needs_document():
            raise ModelError(
                f"entity {self.name}: create may not be {rule.who(self)!r}, a rule on a "
                "document: use SIGNED_IN, group(...), NOBODY or their |"
            )

    @cached_property
    def new_model(self) -> type[Shape]:
        """The body of ``POST /api/v1/db/<name>``."""
        return create_model(f"New{self.title}", __base__=self.Fields)

    @cached_property
    def changes_model(self) -> type[Shape]:
        """The body of ``PUT /api/v1/db/<name>/<id>``: updatable fields, all optional."""
        fields: dict[str, Any] = {
            name: (Annotated[(info.annotation, *info.metadata)], None)
            if info.metadata
            else (info.annotation, None)
            for name, info in self.Fields.model_fields.items()
            if name not in self.create_only
        }
        return create_model(f"{self.title}Changes", __base__=Changes, **fields)

    @cached_property
    def public_model(self) -> type[BaseModel]:
        """What ``to_public`` returns, as a model (its JSON Schema documents responses)."""
        fields: dict[str, Any] = {"id": (ObjectIdOut, Field(alias="_id"))}
        for name, info in self.Fields.model_fields.items():
            kind, optional = field_kind(info.annotation, list(info.metadata))
            fields[name] = (kind | None if optional else kind, ...)
        fields[self.owner_field] = (Owner, ...)
        fields["created_at"] = (DateTimeOut, ...)
        fields["updated_at"] = (DateTimeOut, ...)
        kept = {k: v for k, v in fields.items() if k not in self.hidden}
        return create_model(self.title, __base__=PublicShape, **kept)

    def indexes(self) -> list[IndexSpec]:
        return [IndexSpec(self.collection, [(f"{self.owner_field}._id", 1), ("_id", -1)])]

    def parse_new(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a creation body (a pydantic ValidationError if it is wrong)."""
        return validated(self.new_model, body).model_dump()

    def parse_changes(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate an update body: updatable fields only, at least one of them."""
        changes = validated(self.changes_model, body)
        if not changes.model_fields_set:
            names = ", ".join(self.changes_model.model_fields)
            raise Invalid(f"give at least one of: {names}")
        return changes.model_dump(include=changes.model_fields_set)

    def new_document(self, values: dict[str, Any], user: Principal) -> dict[str, Any]:
        now = db.now()
        return {
            **values,
            self.owner_field: {"_id": ObjectId(user.user_id), "username": user.username},
            "created_at": now,
            "updated_at": now,
        }

    def owner_id(self, doc: dict[str, Any]) -> str:
        return str(doc[self.owner_field]["_id"])

    # The access policy, as the handlers apply it. Each of the three filters is part of
    # the query that reads, updates or deletes, so no document outside it is ever
    # listed, changed or deleted, however requests interleave. By default each applies
    # its class attribute's rule; override one for a policy the rules cannot say (its
    # docstring's first line then describes it in the OpenAPI document).

    def readable_by(self, user: Principal) -> Query:
        """The query filter of the documents ``user`` may read (``read``; default: their
        own). Lists, GETs and ``Ref`` checks see only these."""
        return self.visible_to(user)

    def visible_to(self, user: Principal) -> Query:
        """The former name of ``readable_by``: entities that override it keep working."""
        return self.read.query(self, user)

    def changeable_by(self, user: Principal) -> Query:
        """The query filter of the documents ``user`` may change (``update``; default:
        their own). Only documents they may also read."""
        return self.update.query(self, user)

    def deletable_by(self, user: Principal) -> Query:
        """The query filter of the documents ``user`` may delete (``delete``; default:
        their own). Only documents they may also read."""
        return self.delete.query(self, user)

    def readable_anonymously(self) -> Query | None:
        """The query filter of the documents a caller without a token may read, when
        ``read`` allows ``ANYONE``; else None: such a caller gets 401. An entity that
        overrides ``readable_by`` (``visible_to``) is read by signed-in callers only."""
        if any(
            getattr(type(self), method) is not getattr(Entity, method)
            for method in ACCESS_METHODS["read"]
        ):
            return None
        return self.read.anonymous(self)

    def may_create(self, user: Principal) -> bool:
        """Whether ``user`` may create documents (``create``; default: any signed-in
        user). To decide on the document's values, raise ``Forbidden`` in the
        ``before_insert`` hook."""
        return self.create.query(self, user) == {}

    def access(self, action: Action) -> str:
        """Who may ``action`` a document, in words (the OpenAPI document says it): the
        rule's description, or the docstring's first line of the method overriding it."""
        for method in ACCESS_METHODS[action]:
            own = getattr(type(self), method)
            if own is not getattr(Entity, method):
                lines = (own.__doc__ or "").strip().splitlines()
                if not lines:
                    return f"as {type(self).__name__}.{method} decides"
                text = lines[0].strip().rstrip(".")
                return text[:1].lower() + text[1:]
        rule: Rule = getattr(self, action)
        return rule.describe(self)

    def to_public(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The JSON clients receive (ObjectIds and datetimes are encoded on output): the
        keys of ``public_model``. Override it to change values; to change the keys,
        override ``public_model`` too (tests/test_fuzz_api.py checks every answer)."""
        owner = doc.get(self.owner_field) or {}
        values = {
            "_id": doc["_id"],
            self.owner_field: {"_id": owner.get("_id"), "username": owner.get("username")},
        }
        keys = [info.alias or name for name, info in self.public_model.model_fields.items()]
        return {key: values[key] if key in values else doc.get(key) for key in keys}
