"""Issue 15: a handler of your own reads its body as Tornado documents it, declares its
OpenAPI operation once, and keeps the body size limit (MAX_BODY_BYTES, a JSON 413)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Annotated

import pytest
from openapi_spec_validator import validate

from transom_socketio.shapes import PublicShape, Shape, Text
from transom_socketio.web.base import BaseHandler
from transom_socketio.web.openapi import build_document
from transom_socketio.web.operations import operation


class Greeting(Shape):
    name: Annotated[str, Text(max_length=40)]


class Greeted(PublicShape):
    """The greeting"""

    hello: str
    raw_bytes: int


class GreetHandler(BaseHandler):
    @operation("Greet someone", body=Greeting, responses={200: Greeted}, errors=(503,))
    async def post(self) -> None:
        body = self.json_body(Greeting)
        self.write_json({"hello": body.name, "raw_bytes": len(self.request.body)})


class FormHandler(BaseHandler):
    @operation("Echo a form field", responses={200: Greeted}, errors=(413, 503))
    async def put(self) -> None:
        name = self.get_body_argument("name")
        assert self.get_argument("name") == name
        self.write_json({"hello": name, "raw_bytes": len(self.request.body)})


@pytest.fixture
def own_routes(app):
    app.wildcard_router.add_rules(
        [(r"/api/v1/greet", GreetHandler), (r"/api/v1/form", FormHandler)]
    )


@pytest.mark.gen_test
async def test_request_body_json_body_and_body_arguments_work_in_your_handler(api, own_routes):
    sent = json.dumps({"name": "  Ada "})
    greeted = await api.request("POST", "/api/v1/greet", raw=sent)
    assert (greeted.status, greeted.body) == (200, {"hello": "Ada", "raw_bytes": len(sent)})

    form = urllib.parse.urlencode({"name": "Grace"})
    echoed = await api.request(
        "PUT",
        "/api/v1/form",
        raw=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (echoed.status, echoed.body) == (200, {"hello": "Grace", "raw_bytes": len(form)})


@pytest.mark.gen_test
async def test_your_handler_validates_with_its_model_and_keeps_the_size_limit(api, own_routes):
    bad = await api.request("POST", "/api/v1/greet", {"name": "x" * 41})
    assert bad.status == 400
    assert bad.body["error"] == {
        "code": "validation_error",
        "message": "name must be at most 40 characters",
        "field": "name",
    }
    unknown = await api.request("POST", "/api/v1/greet", {"name": "Ada", "nmae": "x"})
    assert unknown.body["error"]["field"] == "nmae"
    huge = await api.request("POST", "/api/v1/greet", raw=json.dumps({"name": "x" * 70_000}))
    assert (huge.status, huge.error_code) == (413, "payload_too_large")


@pytest.mark.gen_test
async def test_your_route_documents_itself(app, own_routes):
    document = build_document(app)
    validate(document)
    post = document["paths"]["/api/v1/greet"]["post"]
    assert post["summary"] == "Greet someone"
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Greeting"
    }
    assert {"200", "400", "413", "415", "503"} == set(post["responses"])
    greeting = document["components"]["schemas"]["Greeting"]
    assert greeting["properties"]["name"]["maxLength"] == 40
    assert greeting["additionalProperties"] is False
