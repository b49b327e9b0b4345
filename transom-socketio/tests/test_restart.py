"""A process restart and reconnecting clients (issue 6): what survives, what comes back.

The app is stopped the way ``python -m example_app`` stops on SIGTERM (the library's
server.py: stop accepting, ``application.stop``, close the connections), then a new app
is started on the same port and database, as a process manager restarting it would.
The client is a real python-socketio client that reconnects by itself and asks for a
fresh socket token on every attempt, as the demo page does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import socketio
import tornado.httpserver
import tornado.netutil
import tornado.testing
import tornado.web
from example_app.app import make_app
from tornado.httpclient import AsyncHTTPClient

from transom_socketio import app as application
from transom_socketio.config import Settings
from transom_socketio.testing.clients import Api, Sockets

MESSAGES = "/api/v1/db/message"
RECONNECT_WITHIN_SECONDS = 15.0


class Process:
    """One app served on a fixed port, started and stopped as server.py does it."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.app: tornado.web.Application | None = None
        self.server: tornado.httpserver.HTTPServer | None = None

    async def start(self) -> None:
        self.app = make_app(self.settings)
        await application.start(self.app)
        self.server = tornado.httpserver.HTTPServer(self.app)
        self.server.add_sockets(tornado.netutil.bind_sockets(self.port, "127.0.0.1"))

    async def stop(self) -> None:
        assert self.app is not None and self.server is not None
        self.server.stop()
        await application.stop(self.app)
        await asyncio.wait_for(self.server.close_all_connections(), 5)
        self.app = self.server = None


class ReconnectingClient:
    """A socket client that reconnects by itself, with a fresh socket token each time."""

    def __init__(self, api: Api, jwt: str, transports: list[str]) -> None:
        self.api = api
        self.jwt = jwt
        self.transports = transports
        self.tokens_fetched = 0
        self.connects = 0
        self.disconnect_reasons: list[Any] = []
        self.messages: list[dict[str, Any]] = []
        self.client = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", self._on_disconnect)
        self.client.on("message", self._on_message)

    async def _auth(self) -> dict[str, str]:
        """python-socketio calls this before every connection attempt."""
        response = await self.api.request("POST", "/api/v1/user/sockettoken", token=self.jwt)
        if response.status != 200:
            return {}
        self.tokens_fetched += 1
        return {"token": response.body["token"]}

    async def _on_connect(self) -> None:
        self.connects += 1

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnect_reasons.append(reason)

    async def _on_message(self, data: dict[str, Any], meta: Any = None) -> None:
        self.messages.append(data)

    async def connect(self, url: str) -> None:
        await self.client.connect(url, auth=self._auth, transports=self.transports, wait_timeout=10)

    async def wait(self, condition: Any, what: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert time.monotonic() < deadline, f"{what} not within {within}s"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling"]], ids=["websocket", "long-polling"]
)
@pytest.mark.gen_test(timeout=60)
async def test_after_a_restart_state_survives_and_clients_reconnect_by_themselves(
    settings: Settings, app: tornado.web.Application, transports: list[str]
) -> None:
    # ``app`` only gives this test its database (created, then dropped afterwards).
    sock, port = tornado.testing.bind_unused_port()
    sock.close()
    url = f"http://127.0.0.1:{port}"
    http = AsyncHTTPClient(force_instance=True)
    api = Api(http, url)
    first = Process(settings, port)
    await first.start()

    alice = await api.new_user()
    bob = await api.new_user()
    leaver = await api.new_user()
    spare_token = await api.socket_token(alice)  # minted before the restart, never used
    assert (await api.request("POST", "/api/v1/user/logout", token=leaver.token)).status == 200
    listener = ReconnectingClient(api, bob.token, transports)
    await listener.connect(url)
    sent = await api.request("POST", MESSAGES, {"text": "before"}, token=alice.token)
    assert sent.status == 201
    await listener.wait(lambda: len(listener.messages) == 1, "the first message", 5)

    await first.stop()
    await listener.wait(lambda: listener.disconnect_reasons, "the disconnection", 5)
    second = Process(settings, port)
    await second.start()
    sockets = Sockets(url)
    try:
        # The client comes back by itself, with a fresh token (the old one is spent).
        await listener.wait(
            lambda: listener.connects == 2,
            f"the reconnection (disconnected: {listener.disconnect_reasons})",
            RECONNECT_WITHIN_SECONDS,
        )
        assert listener.tokens_fetched == 2
        # JWTs, revocations and unused socket tokens live in MongoDB: they survive.
        me = await api.request("GET", "/api/v1/user/me", token=alice.token)
        assert me.status == 200
        assert me.body["me"]["_id"] == alice.id
        gone = await api.request("GET", "/api/v1/user/me", token=leaver.token)
        assert gone.status == 401
        assert (await sockets.connect(spare_token)).client.connected
        assert (await sockets.refused(spare_token)).connect_errors == [{"message": "INVALID_TOKEN"}]
        # Messages flow again, each once.
        after = await api.request("POST", MESSAGES, {"text": "after"}, token=alice.token)
        assert after.status == 201
        await listener.wait(lambda: len(listener.messages) == 2, "the second message", 5)
        await asyncio.sleep(0.3)
        assert [message["text"] for message in listener.messages] == ["before", "after"]
    finally:
        await sockets.close_all()
        # Stop the server before the client: a python-socketio long-polling client that
        # disconnects first waits ~30 s for its pending poll. No reconnection after that.
        listener.client.reconnection = False
        await second.stop()
        await listener.client.disconnect()
        http.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_was_away_catches_up_through_the_rest_api(
    api: Api, sockets: Sockets
) -> None:
    """Socket.IO delivers at most once, to sockets connected at the time; what a user
    missed while away is in ``GET /api/v1/db/message``, never replayed over the socket."""
    alice = await api.new_user()
    bob = await api.new_user()
    first = await sockets.connect(await api.socket_token(bob))
    await first.client.disconnect()

    missed = await api.request(
        "POST", MESSAGES, {"text": "while away", "to": bob.id}, token=alice.token
    )
    assert missed.status == 201

    back = await sockets.connect(await api.socket_token(bob))
    live = await api.request("POST", MESSAGES, {"text": "back", "to": bob.id}, token=alice.token)
    assert live.status == 201
    assert [message["text"] for message in await back.wait_for("message", 1)] == ["back"]
    history = await api.request("GET", MESSAGES, token=bob.token)
    assert [message["text"] for message in history.body["messages"]] == ["back", "while away"]
    assert first.received("message") == []
