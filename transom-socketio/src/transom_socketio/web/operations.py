"""``@operation(...)``: what a handler method tells the OpenAPI document about itself.

::

    class NoteCountHandler(AuthenticatedHandler):
        @operation("How many notes the caller has", auth=True, errors=(503,),
                   responses={200: NoteCount})
        async def get(self) -> None: ...

``body`` and the models in ``responses`` are pydantic models: the same ones the
method validates with (``self.json_body(Body)``) and answers with. ``auth=True`` adds
the Bearer requirement and its 401, a ``body`` its 400, 413 and 415; ``errors`` lists the
other error statuses (their meaning is written once, in ``web/openapi.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import tornado.web
from pydantic import BaseModel, create_model

from ..shapes import PublicShape

__all__ = ["Response", "envelope", "operation"]

F = TypeVar("F", bound=Callable[..., Any])
JSON = "application/json"


@dataclass(frozen=True)
class Response:
    """A documented answer: a JSON ``model``, or ``schema`` in another ``content_type``
    (no body when both are None)."""

    description: str
    model: type[BaseModel] | None = None
    content_type: str = JSON
    schema: dict[str, Any] | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, type[BaseModel] | Response]
    body: type[BaseModel] | None = None
    auth: bool = False
    errors: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    operation_id: str = ""
    tags: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = ()
    request_id: bool = True  # the answer carries X-Request-ID (API handlers do)
    without_body: bool = False  # HEAD: every answer is headers only
    # With ``auth``: the token is optional (the GETs of an entity that ANYONE reads).
    anonymous: bool = False


def operation(
    summary: str,
    *,
    responses: Mapping[int, type[BaseModel] | Response],
    body: type[BaseModel] | None = None,
    auth: bool = False,
    errors: tuple[int, ...] | Mapping[int, str] = (),
    **more: Any,
) -> Callable[[F], F]:
    """Declare the OpenAPI operation of the decorated handler method. ``errors``: the
    error statuses it may answer (a mapping gives a description of its own)."""
    described = dict(errors) if isinstance(errors, Mapping) else dict.fromkeys(errors, "")
    declared = Operation(summary, responses, body, auth, described, **more)

    def mark(method: F) -> F:
        method.__operation__ = declared  # type: ignore[attr-defined]
        return method

    return mark


def envelope(key: str, model: type[BaseModel], name: str | None = None) -> type[BaseModel]:
    """The model of ``{key: <model>}``, the shape of most answers (``{"user": {...}}``)."""
    title = name or f"{key[:1].upper()}{key[1:]}Envelope"
    fields = cast(dict[str, Any], {key: (model, ...)})
    return create_model(title, __base__=PublicShape, **fields)


def declared_operations(handler: type, kwargs: Mapping[str, Any]) -> dict[str, Operation]:
    """The operations of a route: its handler's ``openapi_operations(kwargs)`` if it has
    one (generic handlers such as the entities'), else each method's ``@operation``;
    and ``head``, GET's without the body, where the handler answers HEAD like GET."""
    custom = getattr(handler, "openapi_operations", None)
    if custom is not None:
        found = dict(custom(kwargs))
    else:
        found = {}
        for method in ("get", "post", "put", "patch", "delete"):
            declared = getattr(getattr(handler, method, None), "__operation__", None)
            if declared is not None:
                found[method] = declared
    serves_head = getattr(handler, "head", None) is not tornado.web.RequestHandler.head
    if "get" in found and serves_head:
        found["head"] = head_of(found["get"])
    return found


def head_of(get: Operation) -> Operation:
    """The HEAD operation of a GET: the same answers and headers, without a body."""
    return replace(
        get,
        summary=f"{get.summary} (headers only)",
        operation_id="head" + get.operation_id[:1].upper() + get.operation_id[1:]
        if get.operation_id
        else "",
        without_body=True,
    )
