"""The example entity `message`: REST and its after_insert pushes."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId

MESSAGES = "/api/v1/db/message"


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    """Every delivery check runs on both paths of realtime/accel/fanout.py."""
    return {"fast_fanout": request.param == "fast fan-out"}


async def post(api, user, body):
    return await api.request("POST", MESSAGES, body, token=user.token)


@pytest.mark.gen_test(timeout=30)
async def test_direct_message_reaches_every_tab_of_addressee_and_author_only(api, sockets):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    eve = await api.new_user("eve")
    ada_tabs = [await sockets.connect(await api.socket_token(ada)) for _ in range(2)]
    bob_tabs = [await sockets.connect(await api.socket_token(bob)) for _ in range(2)]
    eve_socket = await sockets.connect(await api.socket_token(eve))

    sent = await post(api, ada, {"text": "hello bob", "to": bob.id})
    assert sent.status == 201
    message = sent.body["message"]
    assert set(message) == {"_id", "text", "author", "to", "channel", "created_at"}
    assert message["author"] == {"_id": ada.id, "username": "ada"}
    assert message["to"] == bob.id
    for tab in (*ada_tabs, *bob_tabs):
        assert await tab.wait_for("message") == [message]
    await asyncio.sleep(0.3)
    assert eve_socket.received("message") == []


@pytest.mark.gen_test(timeout=30)
async def test_broadcast_reaches_everyone(api, sockets):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    ada_socket = await sockets.connect(await api.socket_token(ada))
    bob_socket = await sockets.connect(await api.socket_token(bob))
    sent = await post(api, bob, {"text": "hello all"})
    assert sent.status == 201
    assert sent.body["message"]["to"] is None
    for client in (ada_socket, bob_socket):
        assert await client.wait_for("message") == [sent.body["message"]]


@pytest.mark.gen_test(timeout=30)
async def test_create_validates_its_input(api):
    ada = await api.new_user("ada")
    cases = [
        ({}, 400, "validation_error"),
        ({"text": ""}, 400, "validation_error"),
        ({"text": "   "}, 400, "validation_error"),
        ({"text": "x" * 2001}, 400, "validation_error"),
        ({"text": 5}, 400, "validation_error"),
        ({"text": "hi", "to": "bob"}, 400, "validation_error"),
        ({"text": "hi", "to": {"$ne": None}}, 400, "validation_error"),
        ({"text": "hi", "extra": 1}, 400, "validation_error"),
        ({"text": "hi", "to": str(ObjectId())}, 404, "not_found"),
    ]
    for body, status, code in cases:
        response = await post(api, ada, body)
        assert (response.status, response.error_code) == (status, code), body
    assert (await post(api, ada, {"text": "x" * 2000})).status == 201
    unauthenticated = await api.request("POST", MESSAGES, {"text": "hi"})
    assert unauthenticated.status == 401


@pytest.mark.gen_test(timeout=30)
async def test_list_shows_sent_received_and_broadcast_newest_first_paginated(api):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    eve = await api.new_user("eve")
    expected = []
    for number in range(5):
        expected.append((await post(api, ada, {"text": f"to bob {number}", "to": bob.id})).body)
    expected.append((await post(api, eve, {"text": "to all"})).body)
    expected.append((await post(api, bob, {"text": "to ada", "to": ada.id})).body)
    await post(api, eve, {"text": "eve to ada", "to": ada.id})  # not bob's business

    newest_first = [body["message"]["_id"] for body in reversed(expected)]
    page = await api.request("GET", MESSAGES + "?limit=4", token=bob.token)
    assert page.status == 200
    assert [m["_id"] for m in page.body["messages"]] == newest_first[:4]
    rest = await api.request(
        "GET", f"{MESSAGES}?limit=4&before={page.body['next']}", token=bob.token
    )
    assert [m["_id"] for m in rest.body["messages"]] == newest_first[4:]
    assert rest.body["next"] is None
    for query in ("?limit=0", "?limit=101", "?limit=x", "?before=nope"):
        bad = await api.request("GET", MESSAGES + query, token=bob.token)
        assert (bad.status, bad.error_code) == (400, "validation_error"), query


@pytest.mark.gen_test(timeout=30)
async def test_only_the_author_may_change_or_delete(api):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    eve = await api.new_user("eve")
    message = (await post(api, ada, {"text": "draft", "to": bob.id})).body["message"]
    url = f"{MESSAGES}/{message['_id']}"

    assert (await api.request("GET", url, token=bob.token)).body["message"] == message
    assert (await api.request("GET", url, token=eve.token)).status == 404
    assert (await api.request("PUT", url, {"text": "hacked"}, token=bob.token)).status == 403
    assert (await api.request("DELETE", url, token=bob.token)).status == 403
    assert (await api.request("PUT", url, {"text": "x"}, token=eve.token)).status == 404

    bad = await api.request("PUT", url, {"to": eve.id}, token=ada.token)
    assert (bad.status, bad.error_code) == (400, "validation_error")
    edited = await api.request("PUT", url, {"text": "final"}, token=ada.token)
    assert edited.status == 200
    assert edited.body["message"]["text"] == "final"
    assert (await api.request("GET", url, token=bob.token)).body["message"]["text"] == "final"

    assert (await api.request("DELETE", url, token=ada.token)).status == 204
    assert (await api.request("GET", url, token=ada.token)).status == 404
    assert (await api.request("DELETE", url, token=ada.token)).status == 404
    not_an_id = await api.request("GET", f"{MESSAGES}/123", token=ada.token)
    assert (not_an_id.status, not_an_id.error_code) == (400, "invalid_id")


@pytest.mark.gen_test(timeout=30)
async def test_before_insert_normalises_line_endings(api):
    ada = await api.new_user("ada")
    created = await post(api, ada, {"text": "one\r\ntwo\rthree"})
    assert created.body["message"]["text"] == "one\ntwo\nthree"


@pytest.mark.gen_test(timeout=30)
async def test_each_way_a_message_is_visible_has_an_index_newest_first(api, db):
    """A page of messages is read from indexes, not by filtering every message before
    it: the author's, the addressee's, the channel's (a broadcast has to=null)."""
    await api.new_user()  # the app has started and made its indexes
    keys = [spec["key"] for spec in (await db["messages"].index_information()).values()]
    for wanted in (
        [("author._id", 1), ("_id", -1)],
        [("to", 1), ("_id", -1)],
        [("channel", 1), ("_id", -1)],
    ):
        assert wanted in keys, keys
