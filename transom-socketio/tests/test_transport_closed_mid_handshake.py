"""A long-polling session closed while its Socket.IO CONNECT is being handled.

socket.io-client starts on long-polling and POSTs engine.io's CLOSE when a page
unloads, so a CLOSE (or a connect timeout) can land while the CONNECT of the same
session waits for the database, in another request. python-socketio runs no
disconnect handler for a socket whose CONNECT is not done; before the fix, the
handshake went on regardless:

- closed while the token was being consumed: the socket was counted against its user
  for good (after MAX_SOCKETS_PER_USER of these the user could open no socket at all)
  and an ERROR traceback was logged;
- closed while its channels were being authorised: the socket connected with no
  session behind it, present in its channels and counted online, with nothing to end it.

Now the handshake is refused (``closed``) and undoes what it did. Each race is made
certain: the handshake is held at the step while the CLOSE is answered.

A POST to a session that is closed but not yet swept by engine.io answered 500; it
gets 400 now.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rawsocket import RawPolling, errors
from test_transport_pending import both_fan_outs

from transom_socketio.testing.clients import Api, Sockets, User

CHANNEL = "room:lobby"


class Held:
    """``method`` of a running service, whose next call waits at its start until
    ``release``: the handshake is held there while the test closes its session."""

    def __init__(self, method: Callable[..., Awaitable[Any]]) -> None:
        self._method = method
        self.reached = asyncio.Event()
        self._released = asyncio.Event()
        self._holding = True

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._holding:
            self._holding = False
            self.reached.set()
            await self._released.wait()
        return await self._method(*args, **kwargs)

    def release(self) -> None:
        self._released.set()


async def connect_then_close(api: Api, held: Held, user: User, auth: dict[str, Any]) -> None:
    """POST a CONNECT on a new long-polling session, then its CLOSE while the handshake is
    held; then let the handshake go on."""
    session = await RawPolling.open(api)
    token = await api.socket_token(user)
    # engine.io answers a POST once its packets are handled: the CONNECT's waits for it.
    connecting = asyncio.ensure_future(session.post("40" + json.dumps({"token": token, **auth})))
    await asyncio.wait_for(held.reached.wait(), 20)
    closed = await session.post("1")
    assert closed.code == 200, closed.body
    held.release()
    await connecting
    assert await session.gone()


async def presence_of(api: Api, user: User) -> dict[str, Any]:
    answer = await api.request("GET", f"/api/v1/presence?users={user.id}", token=user.token)
    assert answer.status == 200, answer.body
    return answer.body["presence"][user.id]


async def channel_members(api: Api, user: User) -> list[str]:
    answer = await api.request("GET", f"/api/v1/channels/{CHANNEL}/presence", token=user.token)
    assert answer.status == 200, answer.body
    return [member["username"] for member in answer.body["presence"]["members"]]


async def refused_as_closed(caplog: Any) -> None:
    """Wait for the held handshake to be refused (it goes on after the requests answered),
    and for python-socketio to take the refused socket out of its rooms."""
    for _ in range(200):
        if any("socket handshake refused: closed" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.1)
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the handshake of the closed session was not refused")


async def closed_while_held(
    api: Api, caplog: Any, monkeypatch: Any, service: Any, step: str, user: User, auth: Any
) -> None:
    """Hold the handshake at ``service.step``, close its session, and check that it was
    refused without an error."""
    caplog.set_level(logging.INFO)
    held = Held(getattr(service, step))
    monkeypatch.setattr(service, step, held)
    await connect_then_close(api, held, user, auth)
    await refused_as_closed(caplog)
    assert errors(caplog.records) == []


async def can_open_her_one_socket(api: Api, sockets: Sockets, user: User) -> None:
    """Her one socket (MAX_SOCKETS_PER_USER=1) is hers to open: the closed one is not
    counted against her."""
    tab = await sockets.connect(await api.socket_token(user))
    assert tab.client.connected
    assert await presence_of(api, user) == {"online": True, "sockets": 1}


@both_fan_outs(max_sockets_per_user=1, presence_grace_seconds=0)
@pytest.mark.gen_test(timeout=60)
async def test_a_session_closed_while_its_token_is_consumed_leaves_nothing_counted(
    api, app, sockets: Sockets, caplog, monkeypatch
):
    ada = await api.new_user()
    nonces = app.settings["services"].nonces
    await closed_while_held(api, caplog, monkeypatch, nonces, "consume", ada, {})

    assert await presence_of(api, ada) == {"online": False, "sockets": 0}
    await can_open_her_one_socket(api, sockets, ada)


@both_fan_outs(max_sockets_per_user=1, presence_grace_seconds=0)
@pytest.mark.gen_test(timeout=60)
async def test_a_session_closed_while_its_channels_are_authorised_does_not_connect(
    api, app, sockets: Sockets, caplog, monkeypatch
):
    ada, bob = await api.new_user(), await api.new_user()
    channels = app.settings["services"].channels
    auth = {"channels": [CHANNEL]}
    await closed_while_held(api, caplog, monkeypatch, channels, "authorized", ada, auth)

    # Not online, not a member of the channel.
    assert await presence_of(api, ada) == {"online": False, "sockets": 0}
    assert ada.username not in await channel_members(api, bob)
    await can_open_her_one_socket(api, sockets, ada)


@both_fan_outs()
@pytest.mark.gen_test(timeout=60)
async def test_a_post_to_a_session_just_closed_gets_400_and_no_error(api, caplog):
    caplog.set_level(logging.INFO)
    session = await RawPolling.open(api)
    assert (await session.post("1")).code == 200
    late = await session.post("3")
    assert late.code == 400, late.body
    assert json.loads(late.body)["error"]["code"] == "bad_request"
    assert session.sid.encode() not in late.body
    assert errors(caplog.records) == []
