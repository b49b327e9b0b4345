"""Issue 14: a socket lives no longer than the session (JWT) that opened it.

Logout races are run for real: socket-token requests and handshakes sent at the same
moment as the logout, over HTTP and WebSocket, several times.
"""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
import socketio

from .support import Api, SocketClient, Sockets, User

TRIALS = 6
TOKEN_REQUESTS = 8


async def try_connect(sockets: Sockets, token: str) -> SocketClient | None:
    """Open a socket with ``token``: the client if accepted, None if refused."""
    wrapped = sockets.new()
    try:
        await wrapped.client.connect(
            sockets.base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10
        )
    except socketio.exceptions.ConnectionError:
        return None
    return wrapped


async def logout(api: Api, user: User) -> None:
    response = await api.request("POST", "/api/v1/user/logout", token=user.token)
    assert response.status == 200, response.body


@pytest.mark.gen_test(timeout=120)
async def test_socket_tokens_requested_during_a_logout_open_no_socket(api, sockets):
    issued = 0
    for _trial in range(TRIALS):
        user = await api.new_user()
        requests = [
            api.request("POST", "/api/v1/user/sockettoken", token=user.token)
            for _ in range(TOKEN_REQUESTS)
        ]
        *answers, _ = await asyncio.gather(*requests, logout(api, user))
        assert {answer.status for answer in answers} <= {200, 401}
        tokens = [answer.body["token"] for answer in answers if answer.status == 200]
        issued += len(tokens)
        opened = await asyncio.gather(*(try_connect(sockets, token) for token in tokens))
        assert opened == [None] * len(tokens), "a token minted with a revoked JWT opened a socket"
    assert issued > 0, "no token was issued during a logout: the race was not run"


@pytest.mark.gen_test(timeout=120)
async def test_handshakes_during_a_logout_leave_no_socket_connected(api, sockets):
    for _trial in range(TRIALS):
        user, watcher = await api.new_user(), await api.new_user()
        watching = await sockets.connect(await api.socket_token(watcher))
        tokens = [await api.socket_token(user) for _ in range(4)]
        *opened, _ = await asyncio.gather(
            *(try_connect(sockets, token) for token in tokens), logout(api, user)
        )
        for client in opened:
            if client is not None:
                await asyncio.wait_for(client.disconnected.wait(), 10)
        # A broadcast after the logout reaches the watcher, and none of the user's sockets.
        sent = await api.request(
            "POST", "/api/v1/db/message", {"text": "after"}, token=watcher.token
        )
        assert sent.status == 201
        await watching.wait_for("message")
        for client in opened:
            assert client is None or client.received("message") == []
        await watching.client.disconnect()


@pytest.mark.parametrize("settings_overrides", [{"jwt_ttl_seconds": 2}])
@pytest.mark.gen_test(timeout=30)
async def test_a_socket_is_disconnected_when_its_jwt_expires(api, sockets, settings_overrides):
    user = await api.new_user()
    client = await sockets.connect(await api.socket_token(user))
    assert client.client.connected
    await asyncio.wait_for(client.disconnected.wait(), 10)
    assert not client.client.connected
    # Its JWT has expired, so it cannot mint another token (the client logs in again).
    again = await api.request("POST", "/api/v1/user/sockettoken", token=user.token)
    assert again.status == 401


@pytest.mark.parametrize("settings_overrides", [{"jwt_ttl_seconds": 2}])
@pytest.mark.gen_test(timeout=30)
async def test_a_token_minted_before_its_jwt_expired_opens_no_socket_after(
    api, sockets, settings_overrides
):
    user = await api.new_user()
    token = await api.socket_token(user)  # valid for SOCKET_TOKEN_TTL_SECONDS (30)
    await asyncio.sleep(max(0.0, expiry_of(user) - time.time()) + 0.2)
    assert await try_connect(sockets, token) is None


def expiry_of(user: User) -> float:
    return float(jwt.decode(user.token, options={"verify_signature": False})["exp"])
