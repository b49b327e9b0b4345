"""The Socket.IO handshake of this app: a one-time token, or the connection is refused.

The handshake's every rule (query-string tokens, races for one token, per-user
limits, tokens minted before a logout) is tested in transom-socketio's own suite.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
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
