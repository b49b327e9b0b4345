"""The Socket.IO handshake: a one-time token, or the connection is refused."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import socketio

from transom_socketio import registry as keys
from transom_socketio.auth.nonces import COLLECTION, token_hash

REFUSED = [{"message": "INVALID_TOKEN"}]


@pytest.mark.gen_test(timeout=20)
async def test_connects_with_the_token_in_the_auth_payload(api, sockets, registry):
    ada = await api.new_user("ada")
    client = await sockets.connect(await api.socket_token(ada))
    assert client.client.connected
    sio = registry[keys.SOCKET_SERVER]
    [sid] = [sid for sid, _ in sio.manager.get_participants("/", f"user:{ada.id}")]
    session = await sio.get_session(sid)
    assert session["user"] == {"_id": ada.id, "username": "ada", "groups": []}
    assert set(sio.rooms(sid)) >= {f"user:{ada.id}", "everyone", sid}


@pytest.mark.gen_test(timeout=20)
async def test_connects_with_the_token_in_the_query_string(api, sockets):
    ada = await api.new_user("ada")
    client = await sockets.connect(query_token=await api.socket_token(ada))
    assert client.client.connected


@pytest.mark.gen_test(timeout=20)
async def test_every_bad_token_is_refused_with_invalid_token(api, sockets, db):
    ada = await api.new_user("ada")
    used = await api.socket_token(ada)
    first = await sockets.connect(used)
    assert first.client.connected

    expired = await api.socket_token(ada)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await db[COLLECTION].update_one({"_id": token_hash(expired)}, {"$set": {"expires_at": past}})

    attempts = {
        "reused": {"auth": {"token": used}},
        "unknown": {"auth": {"token": "A" * 43}},
        "expired": {"auth": {"token": expired}},
        "missing": {"auth": None},
        "empty object": {"auth": {}},
        "not a string": {"auth": {"token": {"$ne": None}}},
        "a number": {"auth": {"token": 12345}},
        "malformed": {"auth": {"token": "not a token"}},
        "reused in query": {"query_token": used},
        "unknown in query": {"query_token": "B" * 43},
    }
    for name, how in attempts.items():
        refused = await sockets.refused(**how)
        assert refused.connect_errors == REFUSED, name
        assert not refused.client.connected, name


@pytest.mark.gen_test(timeout=30)
async def test_simultaneous_handshakes_with_one_token_connect_exactly_once(api, sockets):
    ada = await api.new_user("ada")
    token = await api.socket_token(ada)
    clients = [sockets.new() for _ in range(20)]

    async def attempt(wrapped):
        try:
            await wrapped.client.connect(
                sockets.base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(c) for c in clients))
    assert sum(outcomes) == 1
    losers = [c for c, won in zip(clients, outcomes, strict=True) if not won]
    assert all(c.connect_errors == REFUSED for c in losers)


@pytest.mark.gen_test(timeout=20)
async def test_a_socket_is_refused_beyond_the_per_user_limit(api, sockets, registry):
    settings = registry[keys.SETTINGS]
    ada = await api.new_user("ada")
    for _ in range(settings.max_sockets_per_user):
        await sockets.connect(await api.socket_token(ada))
    refused = await sockets.refused(await api.socket_token(ada))
    assert refused.connect_errors == REFUSED
    bob = await api.new_user("bob")
    assert (await sockets.connect(await api.socket_token(bob))).client.connected


@pytest.mark.gen_test(timeout=20)
async def test_logout_disconnects_the_sockets_opened_with_that_jwt(api, sockets):
    ada = await api.new_user("ada")
    first = await sockets.connect(await api.socket_token(ada))
    second_login = await api.login("ada")
    other_jwt_socket = await sockets.connect(
        await api.socket_token(
            type(ada)(ada.id, ada.username, ada.email, second_login.body["token"])
        )
    )
    out = await api.request("POST", "/api/v1/user/logout", token=ada.token)
    assert out.status == 200
    await asyncio.wait_for(first.disconnected.wait(), 5)
    assert not first.client.connected
    assert other_jwt_socket.client.connected, "a socket of another login session stays"
    # The revoked JWT can no longer mint socket tokens.
    again = await api.request("POST", "/api/v1/user/sockettoken", token=ada.token)
    assert again.status == 401


@pytest.mark.gen_test(timeout=20)
async def test_a_socket_token_minted_before_logout_is_void_after_it(api, sockets):
    ada = await api.new_user("ada")
    token = await api.socket_token(ada)
    assert (await api.request("POST", "/api/v1/user/logout", token=ada.token)).status == 200
    refused = await sockets.refused(token)
    assert refused.connect_errors == REFUSED
