"""Raw engine.io/Socket.IO clients for the transport tests: what an attacker can send.

``RawWebSocket`` speaks the protocol over ``tornado.websocket``, ``RawPolling`` over
plain HTTP requests; neither checks anything a real client library would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import tornado.httpclient
import tornado.websocket

from transom_socketio.testing.clients import Api, SocketClient, Sockets, User

SOCKET_PATH = "/socket.io/?EIO=4&transport="
CLOSED = object()  # what ``RawWebSocket.next`` returns once the server hung up


class RawWebSocket:
    """One engine.io session on a WebSocket from its first request."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, base_url: str) -> RawWebSocket:
        url = base_url.replace("http", "ws", 1) + SOCKET_PATH + "websocket"
        socket = cls(await tornado.websocket.websocket_connect(url))
        opened = await socket.next()
        assert isinstance(opened, str) and opened.startswith("0{"), opened
        return socket

    async def connect(self, token: str) -> None:
        """Socket.IO's CONNECT with a socket token; the server must accept it."""
        await self.send("40" + json.dumps({"token": token}))
        reply = await self.next()
        assert isinstance(reply, str) and reply.startswith("40{"), reply

    async def send(self, frame: str | bytes) -> None:
        await self.connection.write_message(frame, binary=isinstance(frame, bytes))

    async def next(self, within: float = 10) -> Any:
        """The next frame from the server (pings answered, NOOPs skipped), or CLOSED."""
        while True:
            frame = await asyncio.wait_for(self.connection.read_message(), within)
            if frame is None:
                return CLOSED
            if frame == "2":
                await self.send("3")
            elif frame != "6":
                return frame

    async def closed_by_server(self) -> bool:
        """Whether the server ends the connection (after at most its CLOSE packet)."""
        frame = await self.next()
        if frame == "1":
            frame = await self.next()
        return frame is CLOSED

    def close(self) -> None:
        self.connection.close()


class RawPolling:
    """One engine.io session on long-polling HTTP requests."""

    def __init__(self, http: tornado.httpclient.AsyncHTTPClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url
        self.sid = ""

    @classmethod
    async def open(cls, api: Api) -> RawPolling:
        session = cls(api.http, api.base_url)
        response = await session.request("GET", SOCKET_PATH + "polling")
        assert response.code == 200, response.body
        opened = json.loads(response.body.decode()[1:])
        session.sid = opened["sid"]
        return session

    @property
    def path(self) -> str:
        return f"{SOCKET_PATH}polling&sid={self.sid}"

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.http.fetch(
            self.base_url + path, method=method, raise_error=False, request_timeout=15, **kwargs
        )

    async def upgrade(self) -> RawWebSocket:
        """Move this session to a WebSocket, as clients do after their first polls."""
        url = self.base_url.replace("http", "ws", 1) + f"{SOCKET_PATH}websocket&sid={self.sid}"
        socket = RawWebSocket(await tornado.websocket.websocket_connect(url))
        await socket.send("2probe")
        assert await socket.next() == "3probe"
        await socket.send("5")
        return socket

    async def connect(self, token: str) -> None:
        posted = await self.post("40" + json.dumps({"token": token}))
        assert posted.code == 200, posted.body
        reply = await self.poll()
        assert reply.code == 200 and reply.body.startswith(b"40{"), reply.body

    async def post(self, body: str | bytes, **kwargs: Any) -> Any:
        return await self.request("POST", self.path, body=body, **kwargs)

    async def poll(self) -> Any:
        return await self.request("GET", self.path)

    async def gone(self) -> bool:
        """Whether the server dropped the session: a poll gets 400 (after at most a few
        answers holding engine.io's CLOSE packet, for a session closed while idle, or
        events queued before the drop, such as another user's ``presence`` event that
        came from another process)."""
        response = await self.poll()
        for _ in range(3):
            packets = response.body.split(b"\x1e") if response.code == 200 else []
            closing = bool(packets) and packets[-1] == b"1"
            if not closing and not (packets and all(p.startswith(b"4") for p in packets)):
                break
            response = await self.poll()
        assert self.sid.encode() not in (response.body or b"")
        return response.code == 400


class Bystanders:
    """A user who must be served throughout a test, with three tabs: python-socketio's
    client on a WebSocket, the same upgraded from long-polling, and a raw long-polling
    session (python-socketio's polling client takes 30 s to hang up)."""

    def __init__(self, api: Api, user: User, tabs: list[SocketClient], polling: RawPolling) -> None:
        self.api, self.user, self.tabs, self.polling = api, user, tabs, polling

    @classmethod
    async def join(cls, api: Api, sockets: Sockets) -> Bystanders:
        user = await api.new_user()
        websocket = await sockets.connect(await api.socket_token(user))
        upgraded = sockets.new()
        await upgraded.client.connect(
            sockets.base_url,
            auth={"token": await api.socket_token(user)},
            transports=["polling", "websocket"],
            wait_timeout=10,
        )
        polling = await RawPolling.open(api)
        await polling.connect(await api.socket_token(user))
        return cls(api, user, [websocket, upgraded], polling)

    async def assert_served(self, text: str) -> None:
        posted = await self.api.request(
            "POST", "/api/v1/db/message", {"text": text}, token=self.user.token
        )
        assert posted.status == 201, posted.body
        for tab in self.tabs:
            assert (await tab.wait_for("message"))[-1]["text"] == text
        for _ in range(3):  # a ping may come first
            received = await self.polling.poll()
            assert received.code == 200, received.body
            if text.encode() in received.body:
                return
        raise AssertionError(f"the long-polling tab did not get {text!r}")


async def connected_sockets(api: Api, expected: float | None = None) -> float:
    """The connected-sockets gauge from /metrics; with ``expected``, wait for it first
    (the disconnect handler of a closed socket runs after the close)."""
    for _ in range(200):
        response = await api.http.fetch(api.base_url + "/metrics")
        found = re.search(rb"^socketio_connected_sockets (\S+)$", response.body, re.M)
        value = float(found.group(1)) if found else 0.0
        if expected is None or value == expected:
            return value
        await asyncio.sleep(0.02)
    return value


def dropped_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("socket dropped:")]


def errors(records: list[logging.LogRecord]) -> list[str]:
    """Lines at ERROR or above, and any line carrying a traceback."""
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info]


TRANSPORTS = ("websocket", "long-polling", "upgraded")


class Attacker:
    """A signed-in socket on one of ``TRANSPORTS`` that sends what it should not."""

    def __init__(self, websocket: RawWebSocket | None, polling: RawPolling | None) -> None:
        self.websocket, self.polling = websocket, polling

    @classmethod
    async def join(cls, api: Api, transport: str) -> Attacker:
        token = await api.socket_token(await api.new_user())
        if transport == "websocket":
            websocket = await RawWebSocket.open(api.base_url)
            await websocket.connect(token)
            return cls(websocket, None)
        polling = await RawPolling.open(api)
        await polling.connect(token)
        if transport == "upgraded":
            return cls(await polling.upgrade(), polling)
        return cls(None, polling)

    async def dropped_after(self, message: str | bytes) -> bool:
        """Send one engine.io ``message``; whether the server then drops the socket."""
        if self.websocket is not None:
            await self.websocket.send(message)
            return await self.websocket.closed_by_server()
        assert self.polling is not None
        answer = await self.polling.post(message)
        assert answer.code == 400, answer.body
        assert json.loads(answer.body)["error"]["code"] == "malformed_packet"
        assert self.polling.sid.encode() not in answer.body
        return await self.polling.gone()
