"""The OpenAPI document: valid OpenAPI 3.1, and exactly the routes this app serves.

No test counts routes or paths: adding an entity or a route keeps this suite green,
and a route added without an ``@operation`` turns it red, naming the route.
"""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from transom_socketio.testing.openapi import mismatches, operations
from transom_socketio.web.openapi import OPENAPI_PATH, build_document

from {{ cookiecutter.project_slug }} import PROJECT_NAME, __version__

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.mark.gen_test
async def test_the_served_document_is_valid_openapi_3_1(api, app):
    response = await api.request("GET", OPENAPI_PATH)
    assert response.status == 200
    document = response.body
    assert document["openapi"].startswith("3.1.")
    validate(document)  # openapi-spec-validator: the OpenAPI 3.1 meta-schema and references
    assert document == build_document(app)


@pytest.mark.gen_test
async def test_the_document_names_this_app_and_its_version(api):
    info = (await api.request("GET", OPENAPI_PATH)).body["info"]
    assert (info["title"], info["version"]) == (f"{PROJECT_NAME} API", __version__)


@pytest.mark.gen_test
async def test_the_documented_paths_and_methods_are_exactly_the_routes(app):
    assert mismatches(app, build_document(app)) == []


@pytest.mark.gen_test
async def test_every_api_error_is_documented_with_the_error_schema(app):
    for path, method, operation in operations(build_document(app)):
        if not path.startswith("/api/") or method == "head":
            continue
        label = f"{method.upper()} {path}"
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == ERROR, label
        if operation.get("security") == [{"bearerAuth": []}]:
            assert "401" in operation["responses"], label
