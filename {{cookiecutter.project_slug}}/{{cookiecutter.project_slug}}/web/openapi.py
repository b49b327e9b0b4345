"""The OpenAPI 3.1 document of the REST API, served at ``GET /api/v1/openapi.json``.

The document is built from code: the entity paths (``/api/v1/db/<name>`` and
``/api/v1/db/<name>/{id}``) come from ``models.ENTITIES`` and each entity's
fields, so an entity you add is documented with no further work. Routes you add
by hand in ``app.py`` go in ``custom_paths()`` below (or, if they are not part of
the REST API, in ``UNDOCUMENTED_ROUTES``): ``tests/test_openapi.py`` fails on any
route that is in neither, and on any documented path that has no route.

What is written here is checked: ``tests/test_fuzz_api.py`` sends generated
requests to every operation and requires every answer (status, content type,
headers, body) to match this document.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

from .. import jsonutil
from ..auth.nonces import TOKEN_SHAPE
from ..auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from ..auth.users import EMAIL_RULE, USERNAME_RULE
from ..models import ENTITIES
from ..models.base import DATE_TIME, OBJECT_ID, Entity, Field
from .base import BaseHandler
from .presence import MAX_USERS

OPENAPI_PATH = "/api/v1/openapi.json"

# Routes of the app that are not part of the REST API (Tornado route patterns), and why.
UNDOCUMENTED_ROUTES: dict[str, str] = {
    r"/socket.io/$": "the Socket.IO endpoint: engine.io protocol, see the README",
    r"/static/(.*)$": "static files of the demo page (Tornado's static_path)",
    r"/(favicon\.ico)$": "added by Tornado with static_path",
    r"/(robots\.txt)$": "added by Tornado with static_path",
}

JSON = "application/json"
OBJECT_ID_IN = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "description": "24 hex digits"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _regex(pattern: Any) -> str:
    """A Python pattern that is also valid ECMA 262 (the ones used here are)."""
    return str(pattern.pattern)


# --- responses --------------------------------------------------------------------------

REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the request's id (the client's X-Request-ID if well formed), also in logs",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
    }
}

ERROR_CODES: dict[int, str] = {
    400: "The request is invalid: `invalid_json` (the body is not a JSON object), "
    "`validation_error` (a field is missing, of the wrong type or out of range; "
    "`error.field` names it) or `invalid_id` (the id is not 24 hex digits).",
    401: "`authentication_required` (no Authorization header) or `invalid_token` "
    "(the JWT is malformed, forged, expired or revoked).",
    403: "`forbidden`: only the owner may change or delete it.",
    404: "`not_found`: no such document, or none the caller may see.",
    409: "`email_taken` or `username_taken`.",
    413: "`payload_too_large`: the body is larger than MAX_BODY_BYTES.",
    429: "`too_many_requests`: retry after `Retry-After` seconds (also `error.retry_after`).",
    503: "`database_unavailable`: the database does not answer; retry soon. Or, where a "
    "password is hashed (signup, login), `busy`: the hashing queue is full; retry after "
    "`Retry-After` seconds.",
}


def _json_response(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**REQUEST_ID_HEADER, **headers},
        "content": {JSON: {"schema": schema}},
    }


def _error(status: int, description: str | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if status == 429:
        headers["Retry-After"] = {
            "description": "seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    if status == 503:
        headers["Retry-After"] = {
            "description": "seconds to wait before trying again (with `busy`)",
            "schema": {"type": "integer", "minimum": 1},
        }
    return _json_response(description or ERROR_CODES[status], _ref("Error"), **headers)


def _unauthorized() -> dict[str, Any]:
    return _error(401) | {
        "headers": {
            **REQUEST_ID_HEADER,
            "WWW-Authenticate": {
                "description": '`Bearer realm="api"`',
                "required": True,
                "schema": {"type": "string", "pattern": "^Bearer"},
            },
        }
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): _unauthorized() if status == 401 else _error(status) for status in statuses
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


BEARER = [{"bearerAuth": []}]


def _envelope(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: schema},
    }


# --- the user API -----------------------------------------------------------------------


def _user_paths() -> dict[str, Any]:
    signup = {
        "type": "object",
        "required": ["email", "password"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "maxLength": 254, "pattern": _regex(EMAIL_RULE)},
            "password": {
                "type": "string",
                "minLength": MIN_PASSWORD_LENGTH,
                "maxLength": MAX_PASSWORD_LENGTH,
            },
            "username": _nullable(
                {"type": "string", "pattern": _regex(USERNAME_RULE), "maxLength": 32}
            ),
            "display_name": _nullable({"type": "string", "minLength": 1, "maxLength": 100}),
        },
    }
    login_name = {"type": "string", "minLength": 1, "maxLength": 254}
    login = {
        "type": "object",
        "required": ["password"],
        "additionalProperties": False,
        "properties": {
            "username": _nullable(login_name),
            "email": _nullable(login_name),
            "password": {"type": "string", "minLength": 1, "maxLength": MAX_PASSWORD_LENGTH},
        },
        "description": "`username` (a username or an email) or `email`; `username` wins.",
        "anyOf": [
            {"required": ["username"], "properties": {"username": login_name}},
            {"required": ["email"], "properties": {"email": login_name}},
        ],
    }
    socket_token = {
        "summary": "A one-time socket token for the Socket.IO handshake",
        "description": "Valid SOCKET_TOKEN_TTL_SECONDS, usable once, voided at logout.",
        "tags": ["user"],
        "security": BEARER,
        "responses": {
            "200": _json_response("the token", _ref("SocketToken")),
            **_errors(401, 429, 503),
        },
    }
    return {
        "/api/v1/user/signup": {
            "post": {
                "operationId": "signup",
                "summary": "Create an account",
                "tags": ["user"],
                "requestBody": _body(signup),
                "responses": {
                    "201": _json_response("the new account", _envelope("user", _ref("User"))),
                    **_errors(400, 409, 413, 429, 503),
                },
            }
        },
        "/api/v1/user/login": {
            "post": {
                "operationId": "login",
                "summary": "Log in: a Bearer JWT",
                "tags": ["user"],
                "requestBody": _body(login),
                "responses": {
                    "200": _json_response("the JWT", _ref("LoginResult")),
                    "400": _error(400),
                    "401": _error(401, "`invalid_credentials`, for an unknown account too."),
                    **_errors(413, 429, 503),
                },
            }
        },
        "/api/v1/user/logout": {
            "post": {
                "operationId": "logout",
                "summary": "Revoke this JWT and disconnect the sockets opened with it",
                "tags": ["user"],
                "security": BEARER,
                "responses": {
                    "200": _json_response(
                        "logged out",
                        _envelope("success", {"const": True}),
                    ),
                    **_errors(401, 413, 503),
                },
            }
        },
        "/api/v1/user/me": {
            "get": {
                "operationId": "me",
                "summary": "The caller's account",
                "tags": ["user"],
                "security": BEARER,
                "responses": {
                    "200": _json_response("the account", _envelope("me", _ref("User"))),
                    **_errors(401, 503),
                },
            }
        },
        "/api/v1/user/sockettoken": {
            "get": {**socket_token, "operationId": "getSocketToken"},
            "post": {
                **socket_token,
                "operationId": "postSocketToken",
                "responses": {**socket_token["responses"], **_errors(413)},
            },
        },
    }


def _presence_paths() -> dict[str, Any]:
    ids = "[0-9a-fA-F]{24}"
    presence = {
        "type": "object",
        "required": ["online", "sockets"],
        "additionalProperties": False,
        "properties": {
            "online": {"type": "boolean"},
            "sockets": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "/api/v1/presence": {
            "get": {
                "operationId": "presence",
                "summary": "Which of these users are online, with how many sockets",
                "description": "Any signed-in user may ask about any user (SECURITY.md).",
                "tags": ["user"],
                "security": BEARER,
                "parameters": [
                    {
                        "name": "users",
                        "in": "query",
                        "required": True,
                        "description": f"1 to {MAX_USERS} comma-separated user ids",
                        "schema": {"type": "string", "pattern": f"^{ids}(,{ids})*$"},
                    }
                ],
                "responses": {
                    "200": _json_response(
                        "presence by user id",
                        _envelope(
                            "presence",
                            {
                                "type": "object",
                                "propertyNames": {"pattern": "^[0-9a-f]{24}$"},
                                "additionalProperties": presence,
                            },
                        ),
                    ),
                    **_errors(400, 401, 503),
                },
            }
        }
    }


# --- entities ---------------------------------------------------------------------------


def _field_schema(field: Field) -> dict[str, Any]:
    """The JSON Schema of one field as clients send it."""
    if field.reference is not None:
        return {**OBJECT_ID_IN, "description": f"the id of a {field.reference}"}
    if field.kind is str:
        return {
            "type": "string",
            "minLength": field.min_length,
            "maxLength": field.max_length,
            "description": f"at most {field.max_length} characters as sent, at least "
            f"{field.min_length} once surrounding whitespace is trimmed (what is stored)",
        }
    kinds = {bool: "boolean", int: "integer", float: "number"}
    return {"type": kinds[field.kind]}


def _new_schema(entity: Entity) -> dict[str, Any]:
    properties = {
        f.name: _field_schema(f) if f.required else _nullable(_field_schema(f))
        for f in entity.fields
    }
    return {
        "type": "object",
        "required": [f.name for f in entity.fields if f.required],
        "additionalProperties": False,
        "properties": properties,
    }


def _changes_schema(entity: Entity) -> dict[str, Any]:
    properties = {
        f.name: _field_schema(f) if f.required else _nullable(_field_schema(f))
        for f in entity.fields
        if f.updatable
    }
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": properties,
    }


def _title(entity: Entity) -> str:
    return "".join(part.capitalize() for part in entity.name.split("_"))


def _entity_paths(entity: Entity) -> dict[str, Any]:
    name, title = entity.name, _title(entity)
    public = _ref(title)
    tags = [name]
    id_parameter = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": OBJECT_ID_IN,
    }
    return {
        f"/api/v1/db/{name}": {
            "get": {
                "operationId": f"list{title}",
                "summary": f"The {entity.plural} the caller may see, newest first",
                "tags": tags,
                "security": BEARER,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": entity.max_page_size,
                            "default": entity.page_size,
                        },
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "description": "the `next` of the previous page",
                        "schema": OBJECT_ID_IN,
                    },
                ],
                "responses": {
                    "200": _json_response(
                        "one page",
                        {
                            "type": "object",
                            "required": [entity.plural, "next"],
                            "additionalProperties": False,
                            "properties": {
                                entity.plural: {"type": "array", "items": public},
                                "next": _nullable(OBJECT_ID),
                            },
                        },
                    ),
                    **_errors(400, 401, 503),
                },
            },
            "post": {
                "operationId": f"create{title}",
                "summary": f"Create a {name}",
                "tags": tags,
                "security": BEARER,
                "requestBody": _body(_ref(f"New{title}")),
                "responses": {
                    "201": _json_response("created", _envelope(name, public)),
                    **_errors(400, 401, 404, 413, 429, 503),
                },
            },
        },
        f"/api/v1/db/{name}/" + "{id}": {
            "parameters": [id_parameter],
            "get": {
                "operationId": f"get{title}",
                "summary": f"One {name}",
                "tags": tags,
                "security": BEARER,
                "responses": {
                    "200": _json_response(f"the {name}", _envelope(name, public)),
                    **_errors(400, 401, 404, 503),
                },
            },
            "put": {
                "operationId": f"update{title}",
                "summary": f"Change a {name} (its {entity.owner_field} only)",
                "tags": tags,
                "security": BEARER,
                "requestBody": _body(_ref(f"{title}Changes")),
                "responses": {
                    "200": _json_response(f"the changed {name}", _envelope(name, public)),
                    **_errors(400, 401, 403, 404, 413, 429, 503),
                },
            },
            "delete": {
                "operationId": f"delete{title}",
                "summary": f"Delete a {name} (its {entity.owner_field} only)",
                "tags": tags,
                "security": BEARER,
                "responses": {
                    "204": {"description": "deleted", "headers": REQUEST_ID_HEADER},
                    **_errors(400, 401, 403, 404, 429, 503),
                },
            },
        },
    }


def _entity_schemas(entity: Entity) -> dict[str, Any]:
    title = _title(entity)
    return {
        title: entity.public_schema(),
        f"New{title}": _new_schema(entity),
        f"{title}Changes": _changes_schema(entity),
    }


# --- the rest ---------------------------------------------------------------------------


def _system_paths() -> dict[str, Any]:
    health = {
        "type": "object",
        "required": ["status", "mongo"],
        "additionalProperties": False,
        "properties": {"status": {"type": "string"}, "mongo": {"type": "string"}},
    }
    return {
        "/": {
            "get": {
                "operationId": "demoPage",
                "summary": "The live demo page",
                "tags": ["system"],
                "responses": {
                    "200": {
                        "description": "HTML",
                        "headers": {
                            "Content-Security-Policy": {
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Is the process up and does the database answer?",
                "tags": ["system"],
                "responses": {
                    "200": _json_response(
                        "healthy",
                        {
                            **health,
                            "properties": {"status": {"const": "ok"}, "mongo": {"const": "ok"}},
                        },
                    ),
                    "503": _json_response(
                        "the database does not answer",
                        {
                            **health,
                            "properties": {
                                "status": {"const": "unavailable"},
                                "mongo": {"const": "unreachable"},
                            },
                        },
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format)",
                "tags": ["system"],
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["system"],
                "responses": {
                    "200": _json_response(
                        "the OpenAPI 3.1 document",
                        {"type": "object", "required": ["openapi", "paths"]},
                    )
                },
            }
        },
    }


def custom_paths() -> dict[str, Any]:
    """The paths of routes you add to ``app.py`` yourself (Path Item Objects by path)."""
    return {}


def _components(entities: tuple[Entity, ...]) -> dict[str, Any]:
    user = {
        "type": "object",
        "required": ["_id", "username", "email", "display_name", "groups", "created_at"],
        "additionalProperties": False,
        "properties": {
            "_id": OBJECT_ID,
            "username": {"type": "string"},
            "email": {"type": "string"},
            "display_name": {"type": "string"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "created_at": DATE_TIME,
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                    "message": {"type": "string", "minLength": 1},
                    "field": {"type": "string", "description": "the field at fault"},
                    "retry_after": {"type": "integer", "minimum": 1},
                },
            }
        },
    }
    schemas: dict[str, Any] = {
        "Error": error,
        "User": user,
        "LoginResult": {
            "type": "object",
            "required": ["token", "token_type", "expires_in"],
            "additionalProperties": False,
            "properties": {
                "token": {"type": "string", "description": "a JWT (HS256)"},
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "minimum": 1},
            },
        },
        "SocketToken": {
            "type": "object",
            "required": ["token", "expires_in"],
            "additionalProperties": False,
            "properties": {
                "token": {"type": "string", "pattern": _regex(TOKEN_SHAPE)},
                "expires_in": {"type": "integer", "minimum": 1},
            },
        },
    }
    for entity in entities:
        schemas.update(_entity_schemas(entity))
    return {
        "schemas": schemas,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        },
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_document(entities: tuple[Entity, ...] = ENTITIES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's REST API."""
    package = __name__.split(".")[0]
    paths = {**_system_paths(), **_user_paths(), **_presence_paths(), **custom_paths()}
    for entity in entities:
        paths.update(_entity_paths(entity))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{package} API",
            "version": _version(package),
            "description": 'Errors are `{"error": {"code", "message"}}` with the status '
            "listed. Authenticated operations take `Authorization: Bearer <JWT>` from login.",
        },
        "tags": [
            {"name": "user", "description": "accounts, JWTs and socket tokens"},
            *({"name": e.name, "description": f"the {e.name} entity"} for e in entities),
            {"name": "system", "description": "health, metrics, this document, the demo page"},
        ],
        "paths": paths,
        "components": _components(entities),
    }


@functools.cache
def document_json() -> str:
    return jsonutil.dumps(build_document())


class OpenApiHandler(BaseHandler):
    """``GET /api/v1/openapi.json``."""

    def get(self) -> None:
        self.finish(document_json())
