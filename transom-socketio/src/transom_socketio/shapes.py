"""The building blocks of every request and response shape (pydantic v2).

A shape is written once, as a pydantic model, and serves three purposes: it validates
request bodies (``Body.model_validate``), it is the JSON Schema of the OpenAPI
document (web/openapi.py), and it is the contract tests check answers against.

``Text(...)`` and ``Ref(...)`` mark the field types with the app's rules: text is
refused if it holds control characters or lone surrogates, its surrounding blanks
are trimmed, and ids are 24 hex digits. A failed check raises a ``ValidationError``
whose first error ``explain`` turns into the API's ``(message, field)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema, field_validator
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

__all__ = ["PublicShape", "Ref", "Shape", "Text"]

# Control characters other than tab and line breaks.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone UTF-16 surrogates: JSON's "\ud800" decodes to one, and it cannot be encoded as
# UTF-8, so neither the database nor the password hasher can take it.
SURROGATE = re.compile(r"[\ud800-\udfff]")

OBJECT_ID_IN = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "description": "24 hex digits"}
# How ids and times look in responses (jsonutil encodes ObjectIds and datetimes).
OBJECT_ID_OUT = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
DATE_TIME_OUT = {"type": "string", "format": "date-time"}


# What a MongoDB document can hold of an integer (BSON's int64).
INT64 = range(-(2**63), 2**63)


class Shape(BaseModel):
    """Base of request bodies: unknown fields are refused, types are not coerced
    (``"5"`` is not an int, ``true`` is not a number), numbers are finite and integers
    fit in 64 bits (the database cannot store a larger one: it would be a 500)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, regex_engine="python-re", allow_inf_nan=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _fits_a_document(cls, value: Any) -> Any:
        if type(value) is int and value not in INT64:
            raise invalid("must be an integer from -2^63 to 2^63-1")
        return value


class PublicShape(BaseModel):
    """Base of response documents: exactly the keys listed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def invalid(message: str) -> PydanticCustomError:
    """A validation failure; ``explain`` prefixes the message with the field's name."""
    return PydanticCustomError("invalid", message)


class _Rule:
    """Pydantic metadata whose ``parse`` validates and whose ``json_schema`` documents."""

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.parse)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: Any) -> dict[str, Any]:
        return self.json_schema()


@dataclass(frozen=True)
class Text(_Rule):
    """A text field: ``title: Annotated[str, Text(max_length=80)]``.

    ``printable=False`` accepts control characters (passwords), ``strip=False`` keeps
    surrounding blanks, ``pattern`` must match the trimmed value (``rule`` says how)."""

    min_length: int = 1
    max_length: int = 1000
    strip: bool = True
    pattern: re.Pattern[str] | None = None
    rule: str = ""
    printable: bool = True

    def parse(self, value: Any) -> str:
        if value is None:
            raise invalid("must not be null")
        if not isinstance(value, str):
            raise invalid("must be a string")
        # The maximum applies to the value as sent (the schema's maxLength), the minimum
        # to what is left once surrounding whitespace is trimmed.
        if len(value) > self.max_length:
            raise invalid(f"must be at most {self.max_length} characters")
        if self.printable and (UNPRINTABLE.search(value) or SURROGATE.search(value)):
            raise invalid("must not contain control characters")
        if not self.printable and SURROGATE.search(value):
            raise invalid("must be valid Unicode text")
        if self.strip:
            value = value.strip()
        if len(value) < self.min_length:
            if self.min_length == 1:
                raise invalid("must not be empty")
            raise invalid(f"must be at least {self.min_length} characters")
        if self.pattern is not None and not self.pattern.match(value):
            raise invalid(self.rule or "has an invalid format")
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
        }
        if self.pattern is not None:
            schema["pattern"] = self.pattern.pattern  # the patterns used are ECMA 262 too
        if self.strip:
            schema["description"] = (
                f"at most {self.max_length} characters as sent, at least {self.min_length} "
                "once surrounding whitespace is trimmed (what is stored)"
            )
        return schema


@dataclass(frozen=True)
class Ref(_Rule):
    """A field holding the id of a ``"user"`` or of a document of another entity:
    ``to: Annotated[ObjectId, Ref("user")] | None = None``. It is stored as an
    ObjectId and must name a document that exists."""

    entity: str

    def parse(self, value: Any) -> ObjectId:
        return parse_object_id(value)

    def json_schema(self) -> dict[str, Any]:
        return {**OBJECT_ID_IN, "description": f"the id of a {self.entity}"}


def parse_object_id(value: Any) -> ObjectId:
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    raise invalid("must be an id (24 hex digits)")


# Types in responses: what jsonutil writes for each stored value.
ObjectIdOut = Annotated[Any, WithJsonSchema(OBJECT_ID_OUT)]
DateTimeOut = Annotated[Any, WithJsonSchema(DATE_TIME_OUT)]

_TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "string_type": "a string",
    "model_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
}


# The longest field name an error repeats: a name comes from the client when it is
# unknown (or a key inside an object), and the answer must not grow with it.
MAX_FIELD_NAME = 64


def field_name(loc: tuple[int | str, ...]) -> str | None:
    """The dotted name of a field, cut to MAX_FIELD_NAME characters (ending in "...")."""
    name = ".".join(str(part) for part in loc)
    if len(name) > MAX_FIELD_NAME:
        name = name[: MAX_FIELD_NAME - 3] + "..."
    return name or None


def explain(error: ValidationError) -> tuple[str, str | None]:
    """The API's message and field for a failed validation: an unknown field first
    (a typo must not hide behind another error), then the first field at fault. An
    unknown field is named once, in ``field``, never in the message."""
    errors = error.errors(include_url=False)
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = field_name(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return "unknown field (named in error.field)", field
    if kind == "missing":
        return f"{field} is required", field
    if kind.endswith("_type") and first.get("input") is None:
        detail = "must not be null"
    elif kind in _TYPE_NAMES:
        detail = f"must be {_TYPE_NAMES[kind]}"
    elif kind == "invalid":
        detail = first["msg"]
    else:
        detail = first["msg"][:1].lower() + first["msg"][1:]
    return (f"{field} {detail}" if field else detail), field
