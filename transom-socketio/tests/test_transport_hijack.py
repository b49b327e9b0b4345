"""Issue 13, finding 1: a client that knows a socket's engine.io ``sid`` cannot take its stream.

The sid travels in every long-polling URL. An attacker who learns it opens
``ws://HOST/socket.io/?EIO=4&transport=websocket&sid=<sid>`` and tries engine.io's
upgrade handshake (``2probe``, then ``5``). The victims are real python-socketio
clients, one on long-polling only and one upgraded to a WebSocket; the attacker is
a raw WebSocket (and a raw long-polling GET). From the address that opened the
session the attacker is refused by engine.io (the session is already upgraded) and
the fast path never writes to a WebSocket engine.io did not bind; from any other
address every request naming the session is refused (403). In every case the
victim keeps receiving its direct messages and broadcasts and the attacker none.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import tornado.websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from transom_socketio import registry as keys
from transom_socketio.testing.clients import Api, SocketClient, Sockets

MESSAGES = "/api/v1/db/message"
OTHER_ADDRESS = "127.0.0.2"  # loopback too: the server on 127.0.0.1 sees another client


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Both positions of FAST_FANOUT; short pings so that long-polling clients close fast."""
    return {
        "fast_fanout": request.param == "fast fan-out",
        "socketio_ping_interval": 1,
        "socketio_ping_timeout": 2,
    }


class Attacker:
    """A raw WebSocket that names the victim's session and records every frame it gets."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.refused_with: int | None = None
        self.connection: tornado.websocket.WebSocketClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, base_url: str, eio_sid: str, address: str) -> None:
        url = base_url.replace("http://", "ws://")
        request = HTTPRequest(
            f"{url}/socket.io/?EIO=4&transport=websocket&sid={eio_sid}",
            network_interface=address,
        )
        try:
            self.connection = await tornado.websocket.websocket_connect(request)
        except HTTPClientError as error:
            self.refused_with = error.code
            return
        self.reader = asyncio.ensure_future(self._read())
        # engine.io's upgrade handshake: the probe PING, then UPGRADE.
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            await self.connection.write_message("2probe")
            await asyncio.sleep(0.2)
            await self.connection.write_message("5")

    async def _read(self) -> None:
        assert self.connection is not None
        while (frame := await self.connection.read_message()) is not None:
            self.frames.append(frame if isinstance(frame, str) else frame.decode("latin-1"))

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.reader is not None:
            self.reader.cancel()


async def victim_on(transport: str, api: Api, sockets: Sockets, base_url: str, sio: Any):
    """A signed-in python-socketio client on long-polling only, or upgraded from it."""
    user = await api.new_user("victim")
    victim = sockets.new()
    transports = ["polling"] if transport == "polling" else ["polling", "websocket"]
    await victim.client.connect(
        base_url, auth={"token": await api.socket_token(user)}, transports=transports
    )
    eio_sid = victim.client.eio.sid
    if transport == "upgraded":
        for _ in range(200):  # until the server, too, has completed the upgrade
            if sio.eio.transport(eio_sid) == "websocket":
                break
            await asyncio.sleep(0.02)
        assert sio.eio.transport(eio_sid) == "websocket"
    return user, victim, eio_sid


async def polling_get(base_url: str, eio_sid: str, address: str) -> tuple[int, str]:
    """A long-polling GET naming the session: what the attacker would read from it."""
    client = AsyncHTTPClient(force_instance=True)
    request = HTTPRequest(
        f"{base_url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}",
        network_interface=address,
        request_timeout=5,
    )
    try:
        response = await client.fetch(request, raise_error=False)
        return response.code, response.body.decode("latin-1")
    finally:
        client.close()


async def send_direct_and_broadcast(api: Api, victim_user: Any, label: str) -> list[str]:
    sender = await api.new_user()
    texts = [f"direct {label}", f"broadcast {label}"]
    direct = await api.request(
        "POST", MESSAGES, {"text": texts[0], "to": victim_user.id}, token=sender.token
    )
    broadcast = await api.request("POST", MESSAGES, {"text": texts[1]}, token=sender.token)
    assert (direct.status, broadcast.status) == (201, 201)
    return texts


async def assert_victim_gets_everything(victim: SocketClient, texts: list[str]) -> None:
    received = await victim.wait_for("message", len(texts), within=10)
    assert sorted(message["text"] for message in received) == sorted(texts)


@pytest.mark.parametrize("transport", ["polling", "upgraded"])
@pytest.mark.gen_test(timeout=60)
async def test_a_session_is_refused_to_any_other_address(
    api: Api, sockets: Sockets, base_url: str, registry: Any, transport: str
) -> None:
    sio = registry[keys.SOCKET_SERVER]
    user, victim, eio_sid = await victim_on(transport, api, sockets, base_url, sio)
    attacker = Attacker()
    await attacker.open(base_url, eio_sid, OTHER_ADDRESS)
    stolen = asyncio.ensure_future(polling_get(base_url, eio_sid, OTHER_ADDRESS))
    try:
        texts = await send_direct_and_broadcast(api, user, transport)
        await assert_victim_gets_everything(victim, texts)
        status, body = await stolen
        assert not any(text in frame for frame in attacker.frames for text in texts)
        assert not any(text in body for text in texts)
        assert victim.client.connected
        # Refused at once, before engine.io sees them.
        assert attacker.refused_with == 403, "a WebSocket naming the session from elsewhere"
        assert status == 403, "a long-polling GET naming the session from elsewhere"
    finally:
        attacker.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_websocket_naming_an_upgraded_session_gets_none_of_its_messages(
    api: Api, sockets: Sockets, base_url: str, registry: Any
) -> None:
    """From the victim's own address (a shared NAT, the same machine): engine.io refuses
    a second transport for an upgraded session, and the fast path never writes to it."""
    sio = registry[keys.SOCKET_SERVER]
    user, victim, eio_sid = await victim_on("upgraded", api, sockets, base_url, sio)
    attacker = Attacker()
    await attacker.open(base_url, eio_sid, "127.0.0.1")
    try:
        texts = await send_direct_and_broadcast(api, user, "same address")
        await assert_victim_gets_everything(victim, texts)
        more = await send_direct_and_broadcast(api, user, "later")
        await assert_victim_gets_everything(victim, texts + more)
        assert not any(text in frame for frame in attacker.frames for text in texts + more)
        assert victim.client.connected
        # engine.io refused it as a transport, and the server closed it.
        assert attacker.reader is not None
        await asyncio.wait_for(attacker.reader, 5)
    finally:
        attacker.close()
