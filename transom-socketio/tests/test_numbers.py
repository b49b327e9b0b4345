"""Numbers in request bodies: what a MongoDB document and every JSON reader can hold.

An entity may declare ``int`` and ``float`` fields (models/base.py). A JSON integer
beyond 64 bits cannot be stored (the database driver raised, and the API answered 500),
and ``NaN``, ``Infinity`` or ``1e999`` (which Python's json module reads) were stored and
then answered as bare ``NaN`` / ``Infinity``, which no browser's ``JSON.parse`` reads:
one user's document broke the list for everyone. Both are 400 naming the field or the
body now, and nothing is stored.
"""

from __future__ import annotations

import pytest
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from pydantic import create_model

from transom_socketio.models.access import SIGNED_IN
from transom_socketio.models.base import Entity
from transom_socketio.shapes import Shape
from transom_socketio.web.entities import entity_routes

SCORES = "/api/v1/db/score"
LARGEST, SMALLEST = 2**63 - 1, -(2**63)


class Score(Entity):
    """An entity with a number of each kind."""

    name = "score"
    read = SIGNED_IN
    Fields = create_model(
        "ScoreFields", __base__=Shape, points=(int | None, None), ratio=(float | None, None)
    )


@pytest.fixture
def app(app):
    """The application, also serving ``score`` the way it serves every entity."""
    routes = entity_routes((*ENTITIES, Score()), ACTIONS_PACKAGE)[2 * len(ENTITIES) :]
    app.add_handlers(r".*", routes)
    return app


@pytest.mark.gen_test(timeout=30)
async def test_integers_beyond_64_bits_answer_400_naming_the_field(api, db):
    user = await api.new_user()
    for points in (LARGEST + 1, SMALLEST - 1, 2**64, 10**30):
        refused = await api.request("POST", SCORES, {"points": points}, token=user.token)
        assert (refused.status, refused.error_code) == (400, "validation_error"), refused.body
        assert refused.body["error"]["field"] == "points"
    assert await db["scores"].count_documents({}) == 0
    for points in (LARGEST, SMALLEST):
        stored = await api.request("POST", SCORES, {"points": points}, token=user.token)
        assert stored.status == 201, stored.body
        path = f"{SCORES}/{stored.body['score']['_id']}"
        assert (await api.request("GET", path, token=user.token)).body["score"]["points"] == points
    changed = await api.request("PUT", path, {"points": LARGEST + 1}, token=user.token)
    assert (changed.status, changed.body["error"]["field"]) == (400, "points")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
@pytest.mark.gen_test(timeout=30)
async def test_numbers_json_does_not_have_answer_400(api, db, number):
    user = await api.new_user()
    refused = await api.request("POST", SCORES, raw=b'{"ratio": ' + number + b"}", token=user.token)
    assert (refused.status, refused.error_code) == (400, "invalid_json"), refused.body
    assert await db["scores"].count_documents({}) == 0
    kept = await api.request("POST", SCORES, {"ratio": 1.5e308}, token=user.token)
    assert kept.status == 201 and kept.body["score"]["ratio"] == 1.5e308
    listed = await api.request("GET", SCORES, token=user.token)
    assert listed.status == 200 and listed.body["scores"][0]["ratio"] == 1.5e308
