"""An action hook that refuses a write as conflicting with the data (``Conflict``, as
the README's hooks may): 409, as the OpenAPI document of every write says. It was
documented nowhere, so the app's response check answered 500 instead (found by a
review)."""

from __future__ import annotations

import types
from typing import Annotated, Any

import pytest
from example_app.models import ACTIONS_PACKAGE, ENTITIES

from transom_socketio.models.actions import Actions
from transom_socketio.models.base import Entity
from transom_socketio.models.errors import Conflict
from transom_socketio.shapes import Shape, Text
from transom_socketio.web.entities import entity_routes

GADGETS = "/api/v1/db/gadget"


class Gadget(Entity):
    name = "gadget"

    class Fields(Shape):
        title: Annotated[str, Text(max_length=100)]


async def refuse_taken(ctx: Any, doc: dict[str, Any]) -> None:
    if doc.get("title") == "taken":
        raise Conflict("a gadget with this title exists")


async def refuse_always(ctx: Any, doc: dict[str, Any]) -> None:
    raise Conflict("gadgets stay")


@pytest.fixture
def app(app):
    routes = entity_routes((*ENTITIES, Gadget()), ACTIONS_PACKAGE)
    extra = routes[2 * len(ENTITIES) :]
    hooks = types.SimpleNamespace(
        before_insert=refuse_taken, before_update=refuse_taken, before_delete=refuse_always
    )
    for _pattern, _handler, kwargs in extra:
        kwargs["actions"] = Actions(hooks)  # type: ignore[arg-type]
    app.add_handlers(r".*", extra)
    return app


@pytest.mark.gen_test(timeout=30)
async def test_a_hook_s_conflict_answers_409_on_every_write(api):
    user = await api.new_user()
    refused = await api.request("POST", GADGETS, {"title": "taken"}, token=user.token)
    assert (refused.status, refused.error_code) == (409, "conflict"), refused.body
    created = await api.request("POST", GADGETS, {"title": "free"}, token=user.token)
    assert created.status == 201, created.body
    item = f"{GADGETS}/{created.body['gadget']['_id']}"
    changed = await api.request("PUT", item, {"title": "taken"}, token=user.token)
    assert (changed.status, changed.error_code) == (409, "conflict"), changed.body
    deleted = await api.request("DELETE", item, token=user.token)
    assert (deleted.status, deleted.error_code) == (409, "conflict"), deleted.body
    kept = await api.request("GET", item, token=user.token)
    assert kept.status == 200 and kept.body["gadget"]["title"] == "free"
    document = (await api.request("GET", "/api/v1/openapi.json")).body
    for path, method in ((GADGETS, "post"), (item.replace(item.rsplit("/", 1)[1], "{id}"), "put")):
        assert "409" in document["paths"][path][method]["responses"], (path, method)


@pytest.mark.gen_test(timeout=30)
async def test_a_json_answer_carries_no_etag_its_handler_did_not_set(api):
    """Tornado gave every GET a SHA-1 ``Etag`` of its body, and answered 304 to
    ``If-None-Match``, which no operation documents (found by a review). An entity's
    own ``ETag`` (its version) stays."""
    user = await api.new_user()
    created = await api.request("POST", GADGETS, {"title": "free"}, token=user.token)
    listed = await api.request("GET", GADGETS, token=user.token)
    me = await api.request("GET", "/api/v1/user/me", token=user.token)
    for answer in (listed, me):
        assert answer.status == 200
        assert "Etag" not in answer.headers
    item = f"{GADGETS}/{created.body['gadget']['_id']}"
    one = await api.request("GET", item, token=user.token)
    assert one.headers["ETag"] == created.headers["ETag"]
    again = await api.request(
        "GET", "/api/v1/user/me", token=user.token, headers={"If-None-Match": '"x", *'}
    )
    assert again.status == 200
