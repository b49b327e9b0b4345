"""What an entity is: its fields, who may see it, who owns it, how it looks in JSON.

An entity module (``models/<name>.py``) defines a subclass of ``Entity`` and an
instance of it called ``ENTITY``; the generic REST handlers serve it at
``/api/v1/db/<name>`` once it is listed in ``models/__init__.py``. Its optional
action module ``models/actions/<name>.py`` holds the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bson import ObjectId

from .. import db
from ..auth.tokens import Principal
from ..auth.users import parse_object_id
from ..db import IndexSpec
from ..web.errors import bad_request
from ..web.validation import refuse_unprintable

# JSON Schemas of the values ``to_public`` returns (the OpenAPI document, web/openapi.py).
OBJECT_ID: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also allows null."""
    return {**schema, "type": [schema["type"], "null"]}


@dataclass(frozen=True)
class Field:
    """One field of an entity as clients send it.

    ``kind`` is ``str``, ``int``, ``float`` or ``bool``. A field with
    ``reference="user"`` holds a user id: it is stored as an ObjectId and must
    name an existing user. Fields with ``updatable=False`` are set on creation only.
    """

    name: str
    kind: type = str
    required: bool = True
    min_length: int = 1
    max_length: int = 1000
    reference: str | None = None
    updatable: bool = True

    def parse(self, value: Any) -> Any:
        """Check one value from a request body; return what is stored."""
        if self.reference is not None:
            oid = parse_object_id(value)
            if oid is None:
                raise bad_request(f"{self.name} must be an id (24 hex digits)", field=self.name)
            return oid
        if self.kind is str:
            if not isinstance(value, str):
                raise bad_request(f"{self.name} must be a string", field=self.name)
            refuse_unprintable(self.name, value)
            # The maximum applies to the value as sent (the OpenAPI document's maxLength),
            # the minimum to what is left once surrounding whitespace is trimmed.
            trimmed = value.strip()
            if len(value) > self.max_length or len(trimmed) < self.min_length:
                raise bad_request(
                    f"{self.name} must be {self.min_length} to {self.max_length} characters",
                    field=self.name,
                )
            return trimmed
        # bool is a subclass of int: refuse True where a number is expected, and back.
        if type(value) is not self.kind and not (self.kind is float and type(value) is int):
            raise bad_request(f"{self.name} must be of type {self.kind.__name__}", field=self.name)
        return value

    def public_schema(self) -> dict[str, Any]:
        """The JSON Schema of this field's value in responses (null when optional)."""
        schema = dict(OBJECT_ID) if self.reference else {"type": _JSON_TYPES[self.kind]}
        return schema if self.required else nullable(schema)


class Entity:
    """Base class of entities; override the class attributes and, if needed, methods."""

    name: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    owner_field: ClassVar[str] = "owner"
    page_size: ClassVar[int] = 50
    max_page_size: ClassVar[int] = 100

    @property
    def collection(self) -> str:
        return f"{self.name}s"

    @property
    def plural(self) -> str:
        """The key of the list in ``GET /api/v1/db/<name>`` responses."""
        return f"{self.name}s"

    def indexes(self) -> list[IndexSpec]:
        return [IndexSpec(self.collection, [(f"{self.owner_field}._id", 1), ("_id", -1)])]

    def parse_new(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a creation body: known fields only, required ones present."""
        self._refuse_unknown(body, {f.name for f in self.fields})
        values = {}
        for field in self.fields:
            if body.get(field.name) is None:
                if field.required:
                    raise bad_request(f"{field.name} is required", field=field.name)
                values[field.name] = None
            else:
                values[field.name] = field.parse(body[field.name])
        return values

    def parse_changes(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate an update body: updatable fields only, at least one of them."""
        updatable = {f.name: f for f in self.fields if f.updatable}
        self._refuse_unknown(body, set(updatable))
        changes = {}
        for name, value in body.items():
            field = updatable[name]
            if value is None and field.required:
                raise bad_request(f"{name} must not be null", field=name)
            changes[name] = None if value is None else field.parse(value)
        if not changes:
            raise bad_request(f"give at least one of: {', '.join(sorted(updatable))}")
        return changes

    @staticmethod
    def _refuse_unknown(body: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise bad_request(f"unknown field {unknown[0]!r}", field=unknown[0])

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

    def visible_to(self, user: Principal) -> dict[str, Any]:
        """The query filter of the documents ``user`` may read. Default: their own."""
        return {f"{self.owner_field}._id": ObjectId(user.user_id)}

    def to_public(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The JSON clients receive (ObjectIds and datetimes are encoded on output)."""
        owner = doc.get(self.owner_field) or {}
        return {
            "_id": doc["_id"],
            **{field.name: doc.get(field.name) for field in self.fields},
            self.owner_field: {"_id": owner.get("_id"), "username": owner.get("username")},
            "created_at": doc.get("created_at"),
            "updated_at": doc.get("updated_at"),
        }

    def public_schema(self) -> dict[str, Any]:
        """The JSON Schema of ``to_public(doc)``: override it when you override ``to_public``
        (tests/test_fuzz_api.py checks every response against it)."""
        fields = {field.name: field.public_schema() for field in self.fields}
        return {
            "type": "object",
            "required": ["_id", *fields, self.owner_field, "created_at", "updated_at"],
            "additionalProperties": False,
            "properties": {
                "_id": OBJECT_ID,
                **fields,
                self.owner_field: owner_schema(),
                "created_at": DATE_TIME,
                "updated_at": DATE_TIME,
            },
        }


def owner_schema() -> dict[str, Any]:
    """The JSON Schema of ``{"_id", "username"}``, the owner as ``to_public`` shows it."""
    return {
        "type": "object",
        "required": ["_id", "username"],
        "additionalProperties": False,
        "properties": {"_id": OBJECT_ID, "username": nullable({"type": "string"})},
    }
