"""Development and test: each API answer checked against what its operation declares.

The ``@operation(...)`` of a handler method (web/operations.py) is the contract the
OpenAPI document publishes. With ``CHECK_RESPONSES`` on (the default) and
``APP_ENV=development`` or ``test``, ``BaseHandler.finish`` hands every answer to
``mismatch`` before it goes out:

- its status must be declared: in ``responses``, or, for an error, in ``errors`` (or
  implied: 401 by ``auth=True``, 400, 413 and 415 by a ``body``). A 500 is the answer to a
  crash, already logged with its traceback: it is not checked. Nor is the status of
  the 413 every handler gives a body over MAX_BODY_BYTES before its method runs
  (``before_method``), whatever the method: its body still must be an ``Error``;
- a JSON body must be what the declared model validates in strict mode, by its
  aliases (the keys the document shows): ``"5"`` is not an int, an unknown key is
  refused (``PublicShape`` forbids them); an error's body must be the ``Error``
  schema; an answer declared without a body must have none. Answers declared in
  another content type, or by a raw schema (``Response(schema=...)``), are checked
  for their status only.

A mismatch is logged at ERROR with the operation, the status and the first field at
fault, never a value (an answer may hold tokens, e-mail addresses...): a dictionary's
keys are data too and are written ``*``. With ``APP_ENV=test`` the answer is then
replaced by a 500 ``response_mismatch``, so the test that hit it fails; in
development it goes out unchanged. In production nothing is checked and nothing is
computed: ``write`` and ``finish`` test one attribute.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..shapes import field_name
from .errors import Error
from .operations import JSON, Operation, Response, declared_operations

log = logging.getLogger(__name__)

CODE = "response_mismatch"
UNCHECKED_STATUSES = frozenset({500})
BODY_TOO_LARGE = 413
_CACHE_KEY = "response_checks.operations"

# The pydantic error types, said in words (the others are named by their type).
_PROBLEMS = {
    "missing": "is missing",
    "extra_forbidden": "is not declared",
    "json_invalid": "is not JSON",
    "json_type": "is not JSON",
}


@dataclass(frozen=True)
class Mismatch:
    """What is wrong with an answer, without any of its values."""

    operation: str
    status: int
    field: str | None
    problem: str

    def describe(self) -> str:
        return f"{self.operation} answered {self.status}: {self.problem}"

    def body(self) -> dict[str, Any]:
        details = {"field": self.field} if self.field else {}
        message = f"the answer does not match its @operation: {self.describe()}"
        return Error.body(CODE, message, **details)


def route_operations(
    cache: dict[Any, dict[str, Operation]], handler: type, kwargs: Mapping[str, Any]
) -> dict[str, Operation]:
    """The operations of a route, computed once per route (``cache`` lives on the app:
    the route's arguments, whose ids make the key, live as long as it does)."""
    key = (handler, tuple(sorted((name, id(value)) for name, value in kwargs.items())))
    found = cache.get(key)
    if found is None:
        found = cache[key] = declared_operations(handler, kwargs)
    return found


def operations_cache(app_settings: dict[str, Any]) -> dict[Any, dict[str, Operation]]:
    cache: dict[Any, dict[str, Operation]] = app_settings.setdefault(_CACHE_KEY, {})
    return cache


def operation_name(handler: type, method: str, op: Operation) -> str:
    return op.operation_id or f"{handler.__name__}.{method}"


def mismatch(
    name: str,
    op: Operation,
    status: int,
    body: bytes,
    content_type: str,
    *,
    before_method: bool = False,
) -> Mismatch | None:
    """What is wrong with answering ``status`` and ``body`` to ``op`` (None: nothing);
    ``before_method``: the answer was given before the method ran (the request's
    checks, the body limit)."""
    if status in UNCHECKED_STATUSES:
        return None
    declared = op.responses.get(status)
    if declared is None:
        transport = before_method and status == BODY_TOO_LARGE
        if transport or (status >= 400 and status in error_statuses(op)):
            declared = Response("error", Error)
        else:
            return Mismatch(name, status, None, "a status the operation does not declare")
    if not isinstance(declared, Response):
        declared = Response("", declared)
    if declared.model is None:
        if declared.content_type == JSON and declared.schema is None and body:
            return Mismatch(name, status, None, "a body where the operation declares none")
        return None
    if not content_type.startswith(JSON):
        return Mismatch(name, status, None, "a body that is not application/json")
    try:
        declared.model.model_validate_json(body, strict=True, by_alias=True, by_name=False)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        kind = first["type"]
        field = safe_field(declared.model, first["loc"])
        problem = _PROBLEMS.get(kind, f"fails the declared model ({kind})")
        return Mismatch(name, status, field, f"{field or 'the body'} {problem}")
    return None


def error_statuses(op: Operation) -> set[int]:
    """The error statuses of ``op``, as the document lists them (web/openapi.py)."""
    statuses = set(op.errors)
    if op.auth:
        statuses.add(401)
    if op.body is not None:
        statuses |= {400, 413, 415}
    return statuses


def safe_field(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The dotted name of the field at ``loc`` with the keys of dictionaries (data, not
    names) written ``*``; where the model no longer says what comes next (a union), the
    path stops. The name of an undeclared key is kept: it is the handler's own key."""
    parts: list[str | int] = []
    node: Any = model
    for part in loc:
        node = _unwrap(node)
        if part == "[key]":  # a dictionary's key fails its type
            parts.append(part)
            break
        if isinstance(node, type) and issubclass(node, BaseModel):
            parts.append(part)
            fields = node.model_fields
            node = next(
                (info.annotation for key, info in fields.items() if part in (key, info.alias)),
                None,
            )
            if node is None:
                break  # an undeclared key: nothing below it to name
        elif typing.get_origin(node) in (list, tuple, set, frozenset) and isinstance(part, int):
            parts.append(part)
            args = typing.get_args(node)
            node = args[0] if args else None
        elif typing.get_origin(node) is dict:
            parts.append("*")
            node = typing.get_args(node)[1] if typing.get_args(node) else None
        else:
            break
    return field_name(tuple(parts))


def _unwrap(node: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` → ``X``; a union of several stays as is."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(node) if arg is not type(None)]
            if len(members) != 1:
                return node
            node = members[0]
        else:
            return node
