"""The OpenAPI document (issue 6): valid OpenAPI 3.1, and exactly the routes the app serves.

No test counts routes or paths: adding an entity or a route keeps this suite green.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata
from typing import Annotated, Any

import pytest
import tornado.routing
import tornado.web
from bson import ObjectId
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from transom_socketio.models.base import Entity
from transom_socketio.shapes import Ref, Shape, Text
from transom_socketio.web.entities import entity_routes
from transom_socketio.web.openapi import (
    OPENAPI_PATH,
    UNDOCUMENTED_ROUTES,
    build_document,
)

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
USER_ROUTES = (
    "signup",
    "login",
    "logout",
    "me",
    "sockettoken",
    "verify",
    "verify/resend",
    "forgot",
    "reset",
    "password",
)
ADMIN_PATHS = (
    "/api/v1/admin/users",
    "/api/v1/admin/users/{user_id}/groups",
    "/api/v1/admin/users/{user_id}/logout",
)


def served_routes(router: tornado.routing.RuleRouter) -> Iterator[tuple[str, Any]]:
    """(pattern, handler) of every route, through nested routers (the app's default_router)."""
    for rule in router.rules:
        if isinstance(rule.target, tornado.routing.RuleRouter):
            yield from served_routes(rule.target)
        else:
            yield rule.matcher.regex.pattern, rule.target


def template(pattern: str) -> str:
    """``/api/v1/db/message/([^/]+)$`` → ``/api/v1/db/message/{}``."""
    return re.sub(r"\([^)]*\)", "{}", pattern.removesuffix("$")).replace("\\", "")


def documented(path: str) -> str:
    """``/api/v1/db/message/{id}`` → ``/api/v1/db/message/{}``."""
    return re.sub(r"\{[^}/]+\}", "{}", path)


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> set[str]:
    """The HTTP methods a handler class defines (RequestHandler's own answer 405)."""
    return {
        method
        for method in HTTP_METHODS
        if getattr(handler, method) is not getattr(tornado.web.RequestHandler, method)
    }


def mismatches(app: tornado.web.Application, document: dict[str, Any]) -> list[str]:
    """Every disagreement between the routes of ``app`` and the paths of ``document``."""
    routes = {
        template(pattern): handler
        for pattern, handler in served_routes(app.default_router)
        if pattern not in UNDOCUMENTED_ROUTES
    }
    paths = {documented(path): item for path, item in document["paths"].items()}
    problems = [f"undocumented route {route}" for route in sorted(set(routes) - set(paths))]
    problems += [f"documented path without a route {p}" for p in sorted(set(paths) - set(routes))]
    for route in sorted(set(routes) & set(paths)):
        served = implemented_methods(routes[route])
        described = {method for method in paths[route] if method in HTTP_METHODS}
        if served != described:
            problems.append(f"{route}: served {sorted(served)}, documented {sorted(described)}")
    return problems


@pytest.mark.gen_test
async def test_the_served_document_is_valid_openapi_3_1(api, app):
    response = await api.request("GET", OPENAPI_PATH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.body
    assert document["openapi"].startswith("3.1.")
    validate(document)  # openapi-spec-validator: the OpenAPI 3.1 meta-schema and references
    assert document == build_document(app)


@pytest.mark.gen_test
async def test_the_document_names_the_app_it_was_given_else_the_library(api):
    info = (await api.request("GET", OPENAPI_PATH)).body["info"]
    assert (info["title"], info["version"]) == ("Example App API", "0.1.0")
    unnamed = build_document(tornado.web.Application([]))["info"]
    assert (unnamed["title"], unnamed["version"]) == (
        "transom_socketio API",
        metadata.version("transom_socketio"),
    )


@pytest.mark.gen_test
async def test_the_documented_paths_and_methods_are_exactly_the_routes(app):
    document = build_document(app)
    assert mismatches(app, document) == []
    patterns = {pattern for pattern, _ in served_routes(app.default_router)}
    assert set(UNDOCUMENTED_ROUTES) <= patterns, "an excluded route no longer exists"
    paths = {documented(path) for path in document["paths"]}
    for pattern in patterns - set(UNDOCUMENTED_ROUTES):
        assert template(pattern) in paths, f"route {pattern} is not documented"
    expected = [f"/api/v1/user/{name}" for name in USER_ROUTES]
    expected += [*ADMIN_PATHS, "/dev/mail", "/verify", "/reset"]
    for each in ENTITIES:
        collection = f"/api/v1/db/{each.name}"
        expected += [collection, collection + "/{id}"]
    for path in expected:
        assert path in document["paths"], f"{path} is not served and documented"


class ExtraHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish("{}")

    def post(self) -> None:
        self.finish("{}")


@pytest.mark.gen_test
async def test_an_undocumented_route_or_a_phantom_path_or_method_is_reported(app):
    app.wildcard_router.add_rules([(r"/api/v1/extra", ExtraHandler)])
    document = build_document(app)
    assert mismatches(app, document) == ["undocumented route /api/v1/extra"]

    document["paths"]["/api/v1/extra"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    assert mismatches(app, document) == [
        "/api/v1/extra: served ['get', 'post'], documented ['get']"
    ]

    document["paths"]["/api/v1/ghost/{id}"] = document["paths"]["/api/v1/extra"]
    assert "documented path without a route /api/v1/ghost/{}" in mismatches(app, document)


class Memo(Entity):
    name = "memo"
    create_only = ("pinned",)

    class Fields(Shape):
        title: Annotated[str, Text(max_length=80)]
        stars: int | None = None
        weight: float
        pinned: bool | None = None
        shared_with: Annotated[ObjectId, Ref("user")] | None = None


def nullable_type(schema: dict[str, Any]) -> list[str]:
    return sorted(option.get("type", "") for option in schema["anyOf"])


@pytest.mark.gen_test
async def test_a_user_added_entity_is_documented_from_its_fields(app):
    memo = Memo()
    routes = entity_routes((*ENTITIES, memo), ACTIONS_PACKAGE)
    app.wildcard_router.add_rules(routes)
    document = build_document(app)
    validate(document)
    paths = {documented(p) for p in document["paths"]}
    for pattern, _handler, _kwargs in routes[-2:]:
        assert template(pattern + "$") in paths

    schemas = document["components"]["schemas"]
    new = schemas["NewMemo"]
    assert new["required"] == ["title", "weight"]
    assert new["additionalProperties"] is False
    properties = new["properties"]
    assert properties["title"]["type"] == "string"
    assert (properties["title"]["minLength"], properties["title"]["maxLength"]) == (1, 80)
    assert nullable_type(properties["stars"]) == ["integer", "null"]
    assert properties["weight"]["type"] == "number"
    assert nullable_type(properties["pinned"]) == ["boolean", "null"]
    assert properties["shared_with"]["anyOf"][0]["pattern"] == "^[0-9a-fA-F]{24}$"
    assert "pinned" not in schemas["MemoChanges"]["properties"]
    assert schemas["MemoChanges"]["minProperties"] == 1
    public = schemas["Memo"]
    assert set(public["required"]) == {
        "_id",
        "title",
        "stars",
        "weight",
        "pinned",
        "shared_with",
        "owner",
        "created_at",
        "updated_at",
    }
    item = document["paths"]["/api/v1/db/memo/{id}"]
    assert set(item) == {"get", "head", "put", "delete"}
    assert item["put"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MemoChanges"
    }


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.mark.gen_test
async def test_every_api_error_is_documented_with_the_error_schema(app):
    document = build_document(app)
    for path, method, operation in operations(document):
        if not path.startswith("/api/"):
            continue
        label = f"{method.upper()} {path}"
        responses = operation["responses"]
        for status, response in responses.items():
            if method == "head":  # headers only, errors too
                assert "content" not in response, label
            elif int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == ERROR, label
        if operation.get("security") == [{"bearerAuth": []}]:
            assert "401" in responses, label
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"], label
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), label
        if path != OPENAPI_PATH:
            assert "503" in responses, label
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


@pytest.mark.gen_test
async def test_request_bodies_refuse_unknown_fields_and_name_what_is_required(app):
    document = build_document(app)
    schemas = document["components"]["schemas"]
    paths = document["paths"]

    def body(path: str, method: str) -> dict[str, Any]:
        schema = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    signup = body("/api/v1/user/signup", "post")
    assert signup["required"] == ["email", "password"]
    assert signup["properties"]["password"]["minLength"] == 8
    login = body("/api/v1/user/login", "post")
    assert login["required"] == ["password"]
    message = body("/api/v1/db/message", "post")
    assert message["required"] == ["text"]
    assert message["properties"]["text"]["maxLength"] == 2000
    assert body("/api/v1/db/message/{id}", "put")["properties"].keys() == {"text"}
    for schema in (signup, login, message, body("/api/v1/db/message/{id}", "put")):
        assert schema["additionalProperties"] is False


@pytest.mark.gen_test
async def test_an_invalid_document_is_caught_by_the_validator(app):
    document = build_document(app)
    document["paths"]["/api/v1/db/message"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(OpenAPIValidationError):
        validate(document)


@pytest.mark.gen_test
async def test_the_admin_operations_require_a_jwt_and_document_403_and_their_id(app):
    paths = build_document(app)["paths"]
    for path in ADMIN_PATHS:
        for method, operation in paths[path].items():
            if method not in HTTP_METHODS:
                continue
            label = f"{method.upper()} {path}"
            assert operation["security"] == [{"bearerAuth": []}], label
            assert {"401", "403"} <= set(operation["responses"]), label
            if "{user_id}" in path:
                assert "404" in operation["responses"], label
                (parameter,) = (p for p in operation["parameters"] if p["in"] == "path")
                assert parameter["name"] == "user_id" and parameter["required"], label
    listing = {p["name"]: p for p in paths[ADMIN_PATHS[0]]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert set(listing) == {"limit", "before"}


@pytest.mark.gen_test
async def test_the_mail_routes_document_their_same_answer_and_their_429(app):
    paths = build_document(app)["paths"]
    for name in ("verify/resend", "forgot"):
        responses = paths[f"/api/v1/user/{name}"]["post"]["responses"]
        assert {"202", "400", "429"} <= set(responses), name
        assert "200" not in responses, name
        assert "Retry-After" in responses["429"].get("headers", {}), name
    for name in ("verify", "reset"):
        responses = paths[f"/api/v1/user/{name}"]["post"]["responses"]
        assert {"200", "400", "429"} <= set(responses), name
    assert "security" not in paths["/api/v1/user/forgot"]["post"]
    assert paths["/api/v1/user/password"]["post"]["security"] == [{"bearerAuth": []}]
