"""Issue 20, low finding: a server-side disconnect (logout, JWT expiry) ends the
engine.io session too.

python-socketio's server-side disconnect sends Socket.IO's DISCONNECT but keeps the
engine.io session, which went on answering a client's pings, signed in to nothing,
for as long as the client kept it. socket.io-client closes it; a raw client that keeps
pinging need not. Now the session gets engine.io's CLOSE after the DISCONNECT, its
WebSocket is closed by the server, and a long-poll naming it is refused: on every
transport, with either fan-out path (and each message-queue variant: the template bakes and
runs this suite for every one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import pytest
import tornado.websocket
from rawsocket import CLOSED, RawPolling, RawWebSocket, errors

from transom_socketio.testing.clients import Api, User

# Well within the default ping interval and timeout (25 s + 20 s): a session closed in
# time was closed by the server's disconnect, not by engine.io's own timeouts.
WITHIN = 10.0


def both_fan_outs(**settings: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "settings_overrides",
        [{"fast_fanout": True, **settings}, {"fast_fanout": False, **settings}],
        ids=["fast fan-out", "python-socketio fan-out"],
    )


class Pinger:
    """A raw signed-in session that keeps sending pings and pongs whatever it is told
    (and, on long-polling, keeps a poll waiting, as clients do)."""

    def __init__(self, websocket: RawWebSocket | None, polling: RawPolling | None, sid: str):
        self.websocket, self.polling, self.eio_sid = websocket, polling, sid
        self.frames: list[Any] = []
        self.pinging = asyncio.ensure_future(self._ping())
        self.polls = None if websocket is not None else asyncio.ensure_future(self._poll())

    @classmethod
    async def join(cls, api: Api, user: User, transport: str) -> Pinger:
        token = await api.socket_token(user)
        if transport == "websocket":
            url = api.base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
            websocket = RawWebSocket(await tornado.websocket.websocket_connect(url))
            opened = await websocket.next()
            await websocket.connect(token)
            return cls(websocket, None, json.loads(opened[1:])["sid"])
        polling = await RawPolling.open(api)
        await polling.connect(token)
        upgraded = await polling.upgrade() if transport == "upgraded" else None
        return cls(upgraded, polling, polling.sid)

    async def _ping(self) -> None:
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            while True:
                if self.websocket is not None:
                    await self.websocket.send("3")
                    await self.websocket.send("2")
                else:
                    assert self.polling is not None
                    await self.polling.post("3")
                await asyncio.sleep(0.1)

    async def _poll(self) -> int:
        """Long-poll until the server refuses a poll; return that status."""
        assert self.polling is not None
        while (answer := await self.polling.poll()).code == 200:
            self.frames.extend(answer.body.decode().split("\x1e"))
        return int(answer.code)

    async def ended_by_server(self) -> bool:
        """Whether the server sends DISCONNECT, then ends the session (WebSocket closed,
        or long-polls refused), while this client goes on pinging."""
        try:
            if self.websocket is not None:
                deadline = asyncio.get_running_loop().time() + WITHIN
                while (frame := await self.websocket.next(within=WITHIN)) is not CLOSED:
                    self.frames.append(frame)
                    assert asyncio.get_running_loop().time() < deadline, self.frames
            else:
                assert self.polls is not None
                assert await asyncio.wait_for(self.polls, WITHIN) == 400
        finally:
            self.pinging.cancel()
        assert "41" in self.frames, self.frames  # Socket.IO's DISCONNECT first
        return True

    def stop(self) -> None:
        for task in (self.pinging, self.polls):
            if task is not None:
                task.cancel()


async def session_gone(api: Api, eio_sid: str) -> bool:
    """Whether engine.io no longer knows the session (a long-poll naming it gets 400)."""
    answer = await api.http.fetch(
        f"{api.base_url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}",
        raise_error=False,
        request_timeout=WITHIN,
    )
    return answer.code == 400


@both_fan_outs()
@pytest.mark.parametrize("transport", ["websocket", "long-polling", "upgraded"])
@pytest.mark.gen_test(timeout=60)
async def test_a_logout_ends_the_engineio_session_of_a_client_that_keeps_pinging(
    api: Api, transport: str, caplog: Any
) -> None:
    caplog.set_level(logging.INFO)
    user, bystander = await api.new_user(), await api.new_user()
    pinger = await Pinger.join(api, user, transport)
    other = await Pinger.join(api, bystander, transport)
    await asyncio.sleep(0.3)  # a few pings in
    answer = await api.request("POST", "/api/v1/user/logout", token=user.token)
    assert answer.status == 200
    assert await pinger.ended_by_server()
    assert await session_gone(api, pinger.eio_sid)
    # The bystander's session is untouched.
    assert not other.pinging.done()
    sent = await api.request("POST", "/api/v1/db/message", {"text": "hi"}, token=bystander.token)
    assert sent.status == 201
    if other.websocket is not None:
        assert (await other.websocket.next()).startswith("42")
    else:
        for _ in range(100):
            if any(frame.startswith('42["message"') for frame in other.frames):
                break
            await asyncio.sleep(0.05)
        assert any(frame.startswith('42["message"') for frame in other.frames), other.frames
    other.stop()
    assert errors(caplog.records) == []


@both_fan_outs(jwt_ttl_seconds=2)
@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
@pytest.mark.gen_test(timeout=60)
async def test_an_expired_jwt_ends_the_engineio_session_of_a_client_that_keeps_pinging(
    api: Api, transport: str
) -> None:
    user = await api.new_user()
    pinger = await Pinger.join(api, user, transport)
    assert await pinger.ended_by_server()
    assert await session_gone(api, pinger.eio_sid)
