"""Test clients: a JSON client for the REST API and real Socket.IO clients.

``Api`` calls the app over HTTP (``new_user``, ``socket_token``...), ``Sockets`` opens
python-socketio clients that record what they receive, ``RecoveringClient`` recovers
what it missed as an app's README shows. The pytest plugin (``plugin.py``) hands them
to tests as the ``api`` and ``sockets`` fixtures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import socketio
import tornado.httpclient
import tornado.web

from ..realtime.accel import versions
from ..services import REGISTRY_NAMES

__all__ = ["PASSWORD", "Api", "Sockets"]

PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)
# The token of a mailed link (PUBLIC_URL/verify?token=..., /reset?token=...).
MAILED_LINK = re.compile(r"/(?:verify|reset)\?token=([A-Za-z0-9_-]+)")

# Tests of the fast path's own parts: on library versions it was not tested with, the
# app runs stock python-socketio and there is nothing of it to test.
requires_accel = pytest.mark.skipif(
    bool(versions.untested()), reason="the fast path runs only on its tested library versions"
)


def replace_service(app: tornado.web.Application, name: str, service: Any) -> None:
    """Swap one of a running app's services, e.g. ``passwords``, for a test's own:
    in its typed ``Services`` (what the app's handlers use) and under its registry name."""
    app.settings["services"] = app.settings["services"].replace(**{name: service})
    app.settings["registry"].set(REGISTRY_NAMES[name], service, replace=True)


# Prints one line of figures on the terminal (the `report` fixture).
Report = Callable[[str], None]
_counter = itertools.count(1)


@dataclass
class Response:
    status: int
    body: Any
    headers: Any

    @property
    def error_code(self) -> str | None:
        return (
            self.body["error"]["code"]
            if isinstance(self.body, dict) and "error" in self.body
            else None
        )


@dataclass
class User:
    id: str
    username: str
    email: str
    token: str
    password: str = PASSWORD

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """Calls the running app over HTTP, returning status, parsed JSON and headers."""

    def __init__(self, http_client: tornado.httpclient.AsyncHTTPClient, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | str | None = None,
    ) -> Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if raw is not None:
            payload = raw
        elif body is not None:
            payload = json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            payload = b""
        else:
            payload = None
        response = await self.http.fetch(
            self.base_url + path,
            method=method,
            body=payload,
            headers=all_headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        text = response.body.decode() if response.body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Response(response.code, parsed, response.headers)

    async def signup(self, **fields: Any) -> Response:
        return await self.request("POST", "/api/v1/user/signup", fields)

    async def login(self, login: str, password: str = PASSWORD, **extra: Any) -> Response:
        return await self.request(
            "POST", "/api/v1/user/login", {"username": login, "password": password}, **extra
        )

    async def mail(self, to: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The development outbox's mail to ``to`` (of ``kind``), newest first."""
        response = await self.request("GET", f"/dev/mail?to={quote(to)}")
        assert response.status == 200, response.body
        return [m for m in response.body["mail"] if kind is None or m["kind"] == kind]

    async def mailed_token(self, to: str, kind: str, within: float = 10.0) -> str:
        """The token of the newest mail of ``kind`` (``verify``, ``reset``) to ``to``,
        waiting for it to arrive (mail goes out in the background)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = await self.mail(to, kind)
            if found:
                match = MAILED_LINK.search(found[0]["text"])
                assert match is not None, f"no link in the {kind} mail"
                return match.group(1)
            assert asyncio.get_running_loop().time() < deadline, f"no {kind} mail to {to}"
            await asyncio.sleep(0.02)

    async def verify(self, email: str) -> None:
        """Follow the verification mail to ``email`` (from the development outbox)."""
        token = await self.mailed_token(email, "verify")
        verified = await self.request("POST", "/api/v1/user/verify", {"token": token})
        assert verified.status == 200, verified.body

    async def new_user(self, name: str | None = None) -> User:
        """Sign up, verify the address through the development outbox, log in."""
        name = name or f"user{next(_counter)}"
        email = f"{name}@example.com"
        created = await self.signup(email=email, password=PASSWORD, username=name)
        assert created.status == 201, created.body
        await self.verify(email)
        logged_in = await self.login(name)
        assert logged_in.status == 200, logged_in.body
        return User(created.body["user"]["_id"], name, email, logged_in.body["token"])

    async def socket_token(self, user: User) -> str:
        response = await self.request("POST", "/api/v1/user/sockettoken", token=user.token)
        assert response.status == 200, response.body
        return response.body["token"]


@dataclass
class SocketClient:
    """A real python-socketio client that records what it receives."""

    client: socketio.AsyncClient
    events: dict[str, list[Any]] = field(default_factory=dict)
    connect_errors: list[Any] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    # The trailing {"position"} of each message-client event received, in order.
    positions: list[str] = field(default_factory=list)

    def received(self, event: str) -> list[Any]:
        return self.events.get(event, [])

    async def wait_for(self, event: str, count: int = 1, within: float = 5.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.received(event)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"expected {count} {event!r} events, got {self.received(event)}"
                )
            await asyncio.sleep(0.01)
        return self.received(event)


class Sockets:
    """Opens socket clients against the app and closes them all at the end of a test."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opened: list[SocketClient] = []

    def new(self, *events: str) -> SocketClient:
        client = socketio.AsyncClient(reconnection=False)
        wrapped = SocketClient(client)
        for event in ("message", *events):
            wrapped.events.setdefault(event, [])

            async def record(data: Any = None, meta: Any = None, *, _event: str = event) -> None:
                wrapped.events[_event].append(data)
                if isinstance(meta, dict) and "position" in meta:
                    wrapped.positions.append(meta["position"])

            client.on(event, record)

        async def on_connect_error(data: Any = None) -> None:
            wrapped.connect_errors.append(data)

        async def on_disconnect(*_args: Any) -> None:
            wrapped.disconnected.set()

        client.on("connect_error", on_connect_error)
        client.on("disconnect", on_disconnect)
        self.opened.append(wrapped)
        return wrapped

    async def connect(
        self,
        token: Any = None,
        *,
        query_token: str | None = None,
        auth: Any = None,
        events: tuple[str, ...] = (),
    ) -> SocketClient:
        """Connect with ``auth={'token': token}`` (or ``auth``/``?token=``); raise on refusal."""
        wrapped = self.new(*events)
        url = self.base_url + (f"?token={query_token}" if query_token is not None else "")
        if auth is None and token is not None:
            auth = {"token": token}
        await wrapped.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
        return wrapped

    async def refused(self, token: Any = None, **kwargs: Any) -> SocketClient:
        """Connect and expect a refusal; return the client with its connect_error data."""
        wrapped = self.new()
        url = self.base_url + (f"?token={kwargs['query_token']}" if "query_token" in kwargs else "")
        auth = kwargs.get("auth", {"token": token} if token is not None else None)
        try:
            await wrapped.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            return wrapped
        raise AssertionError("the connection was accepted")

    async def close_all(self) -> None:
        for wrapped in self.opened:
            # Also for a client that never connected or was sent away: disconnect()
            # closes its HTTP session (aiohttp), which would otherwise be reported as
            # "Unclosed client session" (an ERROR line) during a later test.
            await wrapped.client.disconnect()
        await asyncio.sleep(0)


class RecoveringClient:
    """A python-socketio client that recovers what it missed, as the README shows: it
    keeps the last position received and sends it, with a fresh socket token, on every
    (re)connection. ``arrivals`` lists what it received, in order: ``(event, payload)``."""

    def __init__(self, api: Api, user: User, url: str, *, events: tuple[str, ...] = ("tick",)):
        self.api = api
        self.user = user
        self.url = url
        self.position: str | None = None
        self.arrivals: list[tuple[str, Any]] = []
        self.connects = 0
        self.disconnected = asyncio.Event()
        # Cleared, the next (re)connection waits for it: a test emits what the socket
        # misses before its client comes back, whatever the machine's load.
        self.may_connect = asyncio.Event()
        self.may_connect.set()
        self._closing = False
        self.client = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.5
        )
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", self._on_disconnect)
        self.client.on("recovery", self._on_recovery)
        for event in events:
            self.client.on(event, self._recorder(event))

    async def _auth(self) -> dict[str, Any]:
        """python-socketio calls this before every connection attempt."""
        await self.may_connect.wait()
        if self._closing:
            return {}  # no token: refused, and the client stops trying (``close``)
        response = await self.api.request("POST", "/api/v1/user/sockettoken", token=self.user.token)
        if response.status != 200:
            return {}
        if self.position is None:  # nothing received yet: recover from when the token was issued
            self.position = response.body["position"]
        return {"token": response.body["token"], "position": self.position}

    def _recorder(self, event: str) -> Callable[..., Awaitable[None]]:
        async def record(payload: Any = None, meta: Any = None) -> None:
            self.arrivals.append((event, payload))
            if isinstance(meta, dict) and "position" in meta:
                self.position = meta["position"]

        return record

    async def _on_recovery(self, summary: dict[str, Any]) -> None:
        self.arrivals.append(("recovery", summary))

    async def _on_connect(self) -> None:
        self.connects += 1
        self.disconnected.clear()

    async def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected.set()

    async def connect(self) -> None:
        await self.client.connect(
            self.url, auth=self._auth, transports=["websocket"], wait_timeout=10
        )

    def payloads(self, event: str = "tick") -> list[Any]:
        return [payload for name, payload in self.arrivals if name == event]

    def recoveries(self) -> list[dict[str, Any]]:
        return self.payloads("recovery")

    async def wait_until(self, condition: Callable[[], bool], within: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {within}s; received {self.arrivals[-5:]}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        # A reconnection waiting for ``may_connect`` (a test that failed before setting
        # it) would keep ``shutdown`` waiting for ever: let it go, without a token.
        self._closing = True
        self.may_connect.set()
        if self.client.connected:
            await self.client.disconnect()
        await self.client.shutdown()
