"""Events that clients send (realtime/events.py): declared, checked, rate limited, acked.

example_app declares ``typing`` (tests/example_app/events.py); the tests here add
events of their own to the same app (``make_app`` below) to reach every outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import socketio
from example_app import app as example_app
from example_app.events import Typing, typing
from pydantic import BaseModel, ConfigDict, Field

from transom_socketio.realtime.events import ClientEvents, ClientSocket
from transom_socketio.testing.clients import SocketClient

SECRET = "do-not-log-this-body"


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(max_length=20)
    count: int = 1


class Echoed(BaseModel):
    text: str
    sid: str
    user_id: str
    username: str | None
    groups: list[str]


# What the handlers below saw, in order: (event, ClientSocket, body).
SEEN: list[tuple[str, ClientSocket, Any]] = []


def declared_events() -> ClientEvents:
    events = ClientEvents()
    events.on("typing", body=Typing, per_socket_per_minute=30)(typing)

    @events.on("echo", body=Echo, per_socket_per_minute=0)
    async def echo(socket: ClientSocket, body: Echo) -> Echoed:
        SEEN.append(("echo", socket, body))
        user = socket.user
        return Echoed(
            text=body.text * body.count,
            sid=socket.sid,
            user_id=user.user_id,
            username=user.username,
            groups=list(user.groups),
        )

    @events.on("pair", body=Echo, per_socket_per_minute=0)
    async def pair(socket: ClientSocket, body: Echo) -> tuple[str, int]:
        return body.text, body.count

    @events.on("limited", body=Echo, per_socket_per_minute=4)  # bursts of 2
    async def limited(socket: ClientSocket, body: Echo) -> dict[str, str]:
        SEEN.append(("limited", socket, body))
        return {"ok": body.text}

    @events.on("boom", body=Echo, per_socket_per_minute=0)
    async def boom(socket: ClientSocket, body: Echo) -> None:
        SEEN.append(("boom", socket, body))
        raise RuntimeError(f"failed on {body.text}")

    return events


@pytest.fixture
def make_app(make_app, monkeypatch):
    """example_app, with the events above instead of its own ``typing`` alone."""
    monkeypatch.setattr(example_app, "events", declared_events())
    SEEN.clear()
    return make_app


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    """The typing indicator reaches its addressee on both paths of realtime/accel/."""
    return {"fast_fanout": request.param == "fast fan-out"}


async def connected(api, sockets, name: str) -> tuple[Any, SocketClient]:
    user = await api.new_user(name)
    return user, await sockets.connect(await api.socket_token(user), events=("typing",))


def call(client: SocketClient, event: str, *args: Any, timeout: float = 5) -> Any:
    """Emit ``event`` and wait for its acknowledgement (python-socketio's ``call``)."""
    return client.client.call(event, args[0] if len(args) == 1 else args, timeout=timeout)


@pytest.mark.gen_test(timeout=60)
async def test_a_declared_event_is_acked_with_what_its_handler_returns(api, sockets):
    ada, ada_socket = await connected(api, sockets, "ada")
    bob, bob_socket = await connected(api, sockets, "bob")

    assert await call(ada_socket, "typing", {"to": bob.id}) == {"ok": True}
    [indicator] = await bob_socket.wait_for("typing")
    assert indicator == {"from": {"_id": ada.id, "username": "ada"}, "typing": True}
    assert bob_socket.positions == [], "ephemeral: no position, nothing to recover"
    assert ada_socket.received("typing") == []

    # The handler gets the socket's principal and sid; a model returned is its JSON dump.
    echoed = await call(ada_socket, "echo", {"text": "hi", "count": 2})
    assert echoed == {
        "text": "hihi",
        "sid": ada_socket.client.get_sid(),
        "user_id": ada.id,
        "username": "ada",
        "groups": [],
    }
    [(_event, socket, body)] = SEEN
    assert socket.user.user_id == ada.id and socket.user.jti
    assert socket.user.expires_at.timestamp() > time.time()
    assert body == Echo(text="hi", count=2)
    # A tuple is several arguments.
    assert await ada_socket.client.call("pair", {"text": "x", "count": 3}, timeout=5) == ("x", 3)

    # Without an ack asked for, the handler runs all the same.
    await ada_socket.client.emit("echo", {"text": "no ack"})
    deadline = asyncio.get_running_loop().time() + 5
    while len(SEEN) < 2:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert SEEN[1][2] == Echo(text="no ack")


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False)
@pytest.mark.gen_test(timeout=60)
async def test_an_invalid_body_is_answered_as_the_http_api_would_and_not_handled(api, sockets):
    _ada, ada_socket = await connected(api, sockets, "ada")
    bob, bob_socket = await connected(api, sockets, "bob")

    def refused(message: str, field: str | None = None) -> dict[str, Any]:
        error = {"code": "validation_error", "message": message}
        return {"error": {**error, "field": field} if field else error}

    assert await call(ada_socket, "typing", {"to": "nope"}) == refused(
        "to must be an id (24 hex digits)", "to"
    )
    assert await call(ada_socket, "typing", {"to": bob.id, "extra": 1}) == refused(
        "unknown field (named in error.field)", "extra"
    )
    assert await call(ada_socket, "echo", {"text": "x" * 21}) == refused(
        "text string should have at most 20 characters", "text"
    )
    assert await call(ada_socket, "echo", {"text": 5}) == refused("text must be a string", "text")
    assert await call(ada_socket, "echo", {}) == refused("text is required", "text")
    assert await call(ada_socket, "echo", ["text"]) == refused("must be an object")
    assert await ada_socket.client.call("echo", timeout=5) == refused(
        "the event takes exactly one argument"
    )
    assert await call(ada_socket, "echo", {"text": "a"}, {"text": "b"}) == refused(
        "the event takes exactly one argument"
    )
    assert SEEN == []
    await asyncio.sleep(0.2)
    assert bob_socket.received("typing") == []
    assert ada_socket.client.connected


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False)
@pytest.mark.gen_test(timeout=60)
async def test_a_socket_over_its_limit_is_answered_rate_limited_and_not_handled(api, sockets):
    ada = await api.new_user("ada")
    first = await sockets.connect(await api.socket_token(ada))
    second = await sockets.connect(await api.socket_token(ada))

    assert await call(first, "limited", {"text": "1"}) == {"ok": "1"}
    assert await call(first, "limited", {"text": "2"}) == {"ok": "2"}
    over = await call(first, "limited", {"text": "3"})
    assert over["error"]["code"] == "rate_limited"
    assert over["error"]["retry_after"] >= 1
    assert "limited" in over["error"]["message"]
    # Counted before the body is checked: an invalid one is refused for the rate.
    assert (await call(first, "limited", {"text": 3}))["error"]["code"] == "rate_limited"
    assert [body.text for _event, _socket, body in SEEN] == ["1", "2"]

    # The limit is per socket and per event: another tab, another event, still pass.
    assert await call(second, "limited", {"text": "4"}) == {"ok": "4"}
    assert (await call(first, "echo", {"text": "e"}))["text"] == "e"
    assert first.client.connected


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False)
@pytest.mark.gen_test(timeout=60)
async def test_an_undeclared_event_is_dropped_as_before(api, sockets):
    _ada, ada_socket = await connected(api, sockets, "ada")
    with pytest.raises(socketio.exceptions.TimeoutError):
        await call(ada_socket, "undeclared", {"text": "x"}, timeout=0.5)
    await ada_socket.client.emit("message", {"text": "x"})
    assert await call(ada_socket, "echo", {"text": "still here"}) is not None
    assert ada_socket.client.connected
    assert [event for event, _socket, _body in SEEN] == ["echo"]


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False)
@pytest.mark.gen_test(timeout=60)
async def test_a_failing_handler_acks_an_internal_error_and_logs_no_payload(api, sockets, caplog):
    ada, ada_socket = await connected(api, sockets, "ada")
    with caplog.at_level(logging.INFO):
        answer = await call(ada_socket, "boom", {"text": SECRET})
    assert answer == {
        "error": {"code": "internal_error", "message": "something went wrong on our side"}
    }
    failures = [r for r in caplog.records if r.name == "transom_socketio.realtime.events"]
    [failure] = [r for r in failures if r.levelno == logging.ERROR]
    line = failure.getMessage()
    assert "'boom'" in line and ada.id in line and "RuntimeError" in line
    assert "test_client_events.py" in line, "where it was raised"
    assert failure.exc_info is None
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text
    # The socket carries on.
    assert (await call(ada_socket, "echo", {"text": "after"}))["text"] == "after"


def test_declarations_are_checked_when_made():
    events = ClientEvents()

    async def handler(socket: ClientSocket, body: Echo) -> None:
        return None

    for name in ("connect", "disconnect", "disconnecting", "connect_error", "*", "\x00x", ""):
        with pytest.raises(ValueError):
            events.on(name, body=Echo)
    with pytest.raises(ValueError):
        events.on("x" * 65, body=Echo)
    with pytest.raises(ValueError):
        events.on("echo", body=Echo, per_socket_per_minute=-1)
    with pytest.raises(TypeError):
        events.on("echo", body=dict)  # type: ignore[type-var]
    events.on("echo", body=Echo)(handler)
    with pytest.raises(ValueError, match="declared already"):
        events.on("echo", body=Echo)
    assert events.names == {"echo"}
