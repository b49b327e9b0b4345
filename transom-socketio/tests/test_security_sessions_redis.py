"""Sessions with REDIS_URL: a logout reaches the sockets of every process through Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web
from conftest import ON_REDIS
from example_app.app import make_app

# Every test of test_security_sessions.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_security_sessions import *  # noqa: F403
from test_security_sessions import assert_logged_out, hold_handshake_at, logout, try_connect

from transom_socketio import app as application
from transom_socketio.config import Settings
from transom_socketio.testing.clients import SocketClient, Sockets

pytestmark = ON_REDIS


@contextlib.asynccontextmanager
async def second_process(settings: Settings) -> AsyncIterator[tornado.web.Application]:
    """Another process of the deployment (same database and Redis channel), in this one,
    so that its services can be held."""
    other = make_app(settings)
    await application.start(other)
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(other)
    server.add_socket(sock)
    other.settings["url"] = f"http://127.0.0.1:{port}"
    try:
        yield other
    finally:
        server.stop()
        await application.stop(other)
        await asyncio.wait_for(server.close_all_connections(), 5)


async def published_through(app: tornado.web.Application, watching: SocketClient) -> None:
    """Publish an event from ``app`` to every socket and wait until ``watching`` (on the
    other process) has it: that process has then handled what ``app`` published before
    (Redis delivers one publisher's messages in order)."""
    io = app.settings["registry"]["transomMsgClient"].io
    seen = len(watching.received("marker"))
    for _attempt in range(20):  # the other process may not be subscribed yet at first
        await io.emit("marker", {}, to="everyone")
        try:
            await watching.wait_for("marker", count=seen + 1, within=1)
            return
        except AssertionError:
            continue
    raise AssertionError("nothing published reached the other process")


@pytest.mark.parametrize("point", ["consumed", "checked", "counted"])
@pytest.mark.gen_test(timeout=90)
async def test_a_logout_on_another_process_ends_a_handshake_held_there(
    api, app, settings, monkeypatch, point
):
    """The logout runs on this process; the socket's handshake, held at ``point``, on
    the other one, and is let go once that one has handled the logout's disconnect."""
    user, watcher = await api.new_user(), await api.new_user()
    async with second_process(settings) as other:
        on_other = Sockets(other.settings["url"])
        try:
            watching = await on_other.connect(await api.socket_token(watcher), events=("marker",))
            await published_through(app, watching)
            hold = hold_handshake_at(point, other, monkeypatch)
            handshake = asyncio.ensure_future(try_connect(on_other, await api.socket_token(user)))
            await asyncio.wait_for(hold.reached.wait(), 10)
            await logout(api, user)
            await published_through(app, watching)  # the other process had the disconnect
            hold.release()
            held = await handshake
            if point in ("consumed", "checked"):
                assert held is None, "a socket whose JWT was logged out connected"
            await assert_logged_out(api, watcher, watching, held)
        finally:
            await on_other.close_all()
