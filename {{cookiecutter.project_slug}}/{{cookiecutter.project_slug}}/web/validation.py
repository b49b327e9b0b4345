"""Small, explicit checks for JSON request fields; each failure is a 400 naming the field."""

from __future__ import annotations

import re
from typing import Any, cast

from .errors import bad_request

# Control characters other than tab and line breaks.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone UTF-16 surrogates: JSON's "\ud800" decodes to one, and it cannot be encoded as
# UTF-8, so neither the database nor the password hasher can take it.
SURROGATE = re.compile(r"[\ud800-\udfff]")


def refuse_unprintable(name: str, value: str) -> None:
    if UNPRINTABLE.search(value) or SURROGATE.search(value):
        raise bad_request(f"{name} must not contain control characters", field=name)


def text(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    min_length: int = 1,
    max_length: int = 1000,
    strip: bool = True,
    pattern: re.Pattern[str] | None = None,
    rule: str = "",
    printable: bool = True,
) -> str | None:
    """Return ``body[name]`` as a checked string (None if optional and absent or null).

    ``printable``: refuse control characters (passwords may hold any character)."""
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", field=name)
    # The maximum applies to the value as sent (the OpenAPI document's maxLength), the
    # minimum to what is left once surrounding whitespace is trimmed.
    if len(value) > max_length:
        raise bad_request(f"{name} must be at most {max_length} characters", field=name)
    if printable:
        refuse_unprintable(name, value)
    elif SURROGATE.search(value):
        raise bad_request(f"{name} must be valid Unicode text", field=name)
    if strip:
        value = value.strip()
    if len(value) < min_length:
        if min_length == 1:
            raise bad_request(f"{name} must not be empty", field=name)
        raise bad_request(f"{name} must be at least {min_length} characters", field=name)
    if pattern is not None and not pattern.match(value):
        raise bad_request(f"{name} {rule or 'has an invalid format'}", field=name)
    return value


def required_text(body: dict[str, Any], name: str, **rules: Any) -> str:
    # text() raises for a missing required field, so the value is a string here.
    return cast(str, text(body, name, required=True, **rules))


def only_fields(body: dict[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields, so a typo in a field name is not silently ignored."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r}", field=unknown[0])
