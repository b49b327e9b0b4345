"""The OpenAPI 3.1 document of the REST API, served at ``GET /api/v1/openapi.json``.

Nothing here describes a route by hand: the document is generated from the routes
the app serves and the ``@operation(...)`` declaration of each handler method
(web/operations.py), and its schemas from the pydantic models those declarations
name (request bodies, answers, the error body). An entity's routes describe
themselves from its ``Fields``. Routes that are not part of the REST API are listed
in ``UNDOCUMENTED_ROUTES``; ``tests/test_openapi.py`` fails on any other route
method without a declaration.

What is generated is checked: ``tests/test_fuzz_api.py`` sends generated requests
to every operation and requires every answer (status, content type, headers, body)
to match this document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import tornado.routing
import tornado.web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import jsonutil
from .base import BaseHandler
from .errors import Error
from .operations import JSON, Operation, Response, declared_operations, operation

__all__ = ["OPENAPI_PATH", "build_document"]

OPENAPI_PATH = "/api/v1/openapi.json"

# Routes of the app that are not part of the REST API (Tornado route patterns), and why.
UNDOCUMENTED_ROUTES: dict[str, str] = {
    r"/socket.io/$": "the Socket.IO endpoint: engine.io protocol, see the README",
    r"/static/(.*)$": "static files of the demo page (Tornado's static_path)",
    r"/(favicon\.ico)$": "added by Tornado with static_path",
    r"/(robots\.txt)$": "added by Tornado with static_path",
}

TAGS = {
    "user": "accounts, JWTs and socket tokens",
    "system": "health, metrics, this document, the demo page",
}

REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the request's id (the client's X-Request-ID if well formed), also in logs",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    }
}
RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

ERROR_CODES: dict[int, str] = {
    400: "The request is invalid: `invalid_json` (the body is not a JSON object), "
    "`validation_error` (a field is missing, of the wrong type or out of range; "
    "`error.field` names it) or `invalid_id` (the id is not 24 hex digits).",
    401: "`authentication_required` (no Authorization header) or `invalid_token` "
    "(the JWT is malformed, forged, expired or revoked).",
    403: "`forbidden`: the caller may not do this (the entity's access policy, or an "
    "action hook refusing).",
    404: "`not_found`: no such document, or none the caller may see.",
    409: "`email_taken` or `username_taken`.",
    412: "`precondition_failed`: `If-Match` names a version the document is no longer at "
    "(GET it again for its current `ETag`).",
    413: "`payload_too_large`: the body is larger than MAX_BODY_BYTES.",
    415: "`unsupported_media_type`: the body was not sent as `Content-Type: application/json`.",
    429: "`too_many_requests`: retry after `Retry-After` seconds (also `error.retry_after`).",
    503: "`database_unavailable`: the database does not answer; retry soon. Or, where a "
    "password is hashed (signup, login), `busy`: the hashing queue is full; retry after "
    "`Retry-After` seconds.",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer realm="api"`',
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer"},
        }
    },
    429: {"Retry-After": RETRY_AFTER},
    503: {
        "Retry-After": {
            "description": "seconds to wait before trying again (with `busy`)",
            "schema": RETRY_AFTER["schema"],
        }
    },
}


# --- routes and their declarations ---------------------------------------------------------


def served_routes(router: tornado.routing.RuleRouter) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(pattern, handler, kwargs) of every route, through nested routers."""
    for rule in router.rules:
        if isinstance(rule.target, tornado.routing.RuleRouter):
            yield from served_routes(rule.target)
        elif isinstance(rule.matcher, tornado.routing.PathMatches):
            yield rule.matcher.regex.pattern, rule.target, dict(rule.target_kwargs)


def path_of(pattern: str) -> str:
    """``/api/v1/db/message/([^/]+)$`` → ``/api/v1/db/message/{id}`` (named groups keep
    their name)."""
    names = iter(["id", "id2", "id3"])
    path = re.sub(
        r"\((?:\?P<(\w+)>)?[^)]*\)",
        lambda match: "{" + (match.group(1) or next(names)) + "}",
        pattern.removesuffix("$"),
    )
    return path.replace("\\", "")


def _default_tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and not p.startswith("{")]
    if parts[:2] == ["api", "v1"] and len(parts) > 2 and path != OPENAPI_PATH:
        return parts[3] if parts[2] == "db" and len(parts) > 3 else parts[2]
    return "system"


def declarations(app: tornado.web.Application) -> dict[str, dict[str, Operation]]:
    """The operations of every documented route, by OpenAPI path."""
    found: dict[str, dict[str, Operation]] = {}
    for pattern, handler, kwargs in served_routes(app.default_router):
        if pattern in UNDOCUMENTED_ROUTES:
            continue
        operations = declared_operations(handler, kwargs)
        if operations:
            found[path_of(pattern)] = operations
    return found


# --- the document --------------------------------------------------------------------------


class _Schemas:
    """Collects the models the operations name; their JSON Schemas become components."""

    def __init__(self) -> None:
        self.models: list[tuple[type[BaseModel], str]] = [(Error, "serialization")]

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, Any]:
        self.models.append((model, mode))
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def components(self) -> dict[str, Any]:
        unique = list(dict.fromkeys(self.models))
        _, schemas = models_json_schema(
            unique,  # type: ignore[arg-type]
            ref_template="#/components/schemas/{model}",
        )
        return schemas.get("$defs", {})


def _response(answer: type[BaseModel] | Response, schemas: _Schemas) -> dict[str, Any]:
    if not isinstance(answer, Response):
        answer = Response((answer.__doc__ or answer.__name__).strip().splitlines()[0], answer)
    described: dict[str, Any] = {"description": answer.description}
    headers = dict(answer.headers)
    if answer.content_type == JSON:
        headers = {**REQUEST_ID_HEADER, **headers}
    if headers:
        described["headers"] = headers
    schema = schemas.ref(answer.model, "serialization") if answer.model else answer.schema
    if schema is not None:
        described["content"] = {answer.content_type: {"schema": schema}}
    return described


def _error(status: int, description: str, auth: bool, schemas: _Schemas) -> dict[str, Any]:
    # A 401 of a Bearer operation says how to authenticate; a failed login does not.
    headers = ERROR_HEADERS.get(status, {}) if status != 401 or auth else {}
    return {
        "description": description or ERROR_CODES[status],
        "headers": {**REQUEST_ID_HEADER, **headers},
        "content": {JSON: {"schema": schemas.ref(Error, "serialization")}},
    }


def _operation(path: str, method: str, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    errors = dict(op.errors)
    if op.auth:
        errors.setdefault(401, "")
    if op.body is not None:
        errors.setdefault(400, "")
        errors.setdefault(413, "")
        errors.setdefault(415, "")
    responses = {str(s): _response(answer, schemas) for s, answer in op.responses.items()}
    for status in sorted(errors):
        responses.setdefault(str(status), _error(status, errors[status], op.auth, schemas))
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"\W+", path) if part)
    described: dict[str, Any] = {
        "operationId": op.operation_id or f"{method}{camel}",
        "summary": op.summary,
        "tags": list(op.tags) or [_default_tag(path)],
    }
    if op.description:
        described["description"] = op.description
    if op.auth:
        # An empty requirement first: no token is also accepted.
        described["security"] = [{}, {"bearerAuth": []}] if op.anonymous else [{"bearerAuth": []}]
    parameters = list(op.parameters)
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    for name in re.findall(r"\{(\w+)\}", path):
        if name not in declared:
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schemas.ref(op.body, "validation")}},
        }
    if op.without_body:
        for answer in responses.values():
            answer.pop("content", None)
    described["responses"] = responses
    return described


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def api_info(title: str | None = None, version: str | None = None) -> dict[str, str]:
    """The document's ``info``: the app's name and version where it gives them (the
    ``application`` arguments), else this library's."""
    package = __name__.split(".")[0]
    return {
        "title": title or f"{package} API",
        "version": version or _version(package),
        "description": 'Errors are `{"error": {"code", "message"}}` with the status '
        "listed. Authenticated operations take `Authorization: Bearer <JWT>` from login.",
    }


def build_document(app: tornado.web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes ``app`` serves."""
    schemas = _Schemas()
    paths = {
        path: {method: _operation(path, method, op, schemas) for method, op in ops.items()}
        for path, ops in declarations(app).items()
    }
    used = dict.fromkeys(
        tag for item in paths.values() for op in item.values() for tag in op["tags"]
    )
    return {
        "openapi": "3.1.0",
        "info": app.settings.get("openapi_info") or api_info(),
        "tags": [
            {"name": tag, "description": TAGS.get(tag, f"the {tag} entity")}
            for tag in sorted(used, key=lambda t: (t == "system", t != "user", t))
        ],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


class OpenApiHandler(BaseHandler):
    """``GET /api/v1/openapi.json``."""

    @operation(
        "This document",
        operation_id="openapi",
        tags=("system",),
        responses={
            200: Response(
                "the OpenAPI 3.1 document",
                schema={"type": "object", "required": ["openapi", "paths"]},
            )
        },
    )
    def get(self) -> None:
        settings = self.application.settings
        if "openapi_json" not in settings:  # built once, from the routes served
            settings["openapi_json"] = jsonutil.dumps(build_document(self.application))
        self.finish(settings["openapi_json"])
