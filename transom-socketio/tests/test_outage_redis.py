"""Outages with REDIS_URL: the database's (every test of test_outage.py again), and Redis's:
the last one cuts the app off Redis and reconnects it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web
from conftest import ON_REDIS
from example_app.app import make_app

# Every test of test_outage.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_outage import *  # noqa: F403
from test_outage import BOUND_SECONDS, MESSAGES
from test_recovery import away, clients, recovering  # noqa: F401 - clients: a fixture

from transom_socketio import app as application
from transom_socketio.config import Settings
from transom_socketio.realtime.redis_queue import close_write_only, write_only_message_client
from transom_socketio.testing.clients import Api, Report, Sockets

pytestmark = ON_REDIS


class TcpRelay:
    """A TCP relay to Redis. Stopping it is a Redis outage for the app behind it: its
    connections drop and new ones are refused. Starting it again on the same port ends
    the outage."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.transports: set[asyncio.BaseTransport] = set()
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.abort()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()
        self.server = None
        self.transports.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.transports |= {writer.transport, upstream_writer.transport}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


class Served:
    """An app of its own, served on a free port (its settings differ from the fixture's)."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_app(settings)
        sock, port = tornado.testing.bind_unused_port()
        self.server = tornado.httpserver.HTTPServer(self.app)
        self.server.add_socket(sock)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.server.stop()
        await application.stop(self.app)
        await self.server.close_all_connections()


async def behind_relay(settings: Settings) -> tuple[TcpRelay, Served]:
    """Another process of the deployment, started, that reaches Redis through a relay:
    stopping the relay is a Redis outage for it alone."""
    redis = urlsplit(settings.redis_url)
    relay = TcpRelay(redis.hostname or "127.0.0.1", redis.port or 6379)
    await relay.start()
    served = Served(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{relay.port}{redis.path}"})
    )
    await application.start(served.app)
    return relay, served


async def until(condition: Callable[[], bool], within: float, step: Callable[[], Any]) -> float:
    """Call ``step`` every 0.25 s until ``condition`` holds; return the time it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"not within {within}s"
        await step()
        await asyncio.sleep(0.25)
    return time.monotonic() - started


@pytest.mark.gen_test(timeout=90)
async def test_a_redis_outage_keeps_this_process_working_and_it_resubscribes_by_itself(
    settings: Settings, app: tornado.web.Application, http_client: Any, report: Report
) -> None:
    """Redis carries emits between processes. Cut off from it, a process keeps serving
    REST, handshakes, logouts and emits to its own sockets; emits from other processes
    cannot reach it meanwhile (Socket.IO delivers at most once); when Redis is back it
    subscribes again by itself."""
    # ``app`` only gives this test its database; the app under test reaches Redis through
    # the relay, and a worker (another process, say) reaches Redis directly.
    relay, served = await behind_relay(settings)
    worker = write_only_message_client(settings)
    api = Api(http_client, served.url)
    sockets = Sockets(served.url)
    try:
        alice = await api.new_user()
        bob = await api.new_user()
        carol = await api.new_user()
        listener = await sockets.connect(await api.socket_token(bob), events=("notice",))
        leaving = await sockets.connect(await api.socket_token(carol))
        notices = 0

        async def worker_notice() -> None:
            nonlocal notices
            notices += 1
            await worker.emitToEveryone("notice", {"n": notices})

        await until(lambda: bool(listener.received("notice")), 10, worker_notice)

        await relay.stop()
        outage_started = time.monotonic()
        during = await api.request("POST", MESSAGES, {"text": "during"}, token=alice.token)
        posted_in = time.monotonic() - outage_started
        assert during.status == 201
        assert posted_in < BOUND_SECONDS
        assert (await listener.wait_for("message", 1))[-1]["text"] == "during"
        health = await api.request("GET", "/health")
        assert health.status == 200
        newcomer = await sockets.connect(await api.socket_token(alice))
        assert newcomer.client.connected
        logout = await api.request("POST", "/api/v1/user/logout", token=carol.token)
        assert logout.status == 200
        await asyncio.wait_for(leaving.disconnected.wait(), 5)
        before_outage = len(listener.received("notice"))
        await worker_notice()
        await asyncio.sleep(1)
        lost = 1 + before_outage - len(listener.received("notice"))
        assert listener.client.connected

        await relay.start()
        outage_seconds = time.monotonic() - outage_started
        # "during" is in no stream: once Redis answers, this process marks the loss there,
        # and every process closes its sockets so that their clients recover (told
        # complete: false), this one's included.
        await asyncio.wait_for(listener.disconnected.wait(), 30)
        listener = await sockets.connect(await api.socket_token(bob), events=("notice",))
        resubscribed = await until(lambda: bool(listener.received("notice")), 30, worker_notice)
        after = await api.request("POST", MESSAGES, {"text": "after"}, token=alice.token)
        assert after.status == 201
        assert [m["text"] for m in await listener.wait_for("message", 1)] == ["after"]
        report(
            f"redis outage of {outage_seconds:.1f}s for this process: POST message 201 in "
            f"{posted_in:.2f}s and delivered to this process's sockets, /health 200, handshake "
            f"and logout worked; emits from another process during it lost: {lost} of 1; "
            f"the loss marked and sockets told when Redis was back; emits from the other "
            f"process arrive again {resubscribed:.1f}s after reconnecting"
        )
    finally:
        await sockets.close_all()
        await close_write_only(worker)
        await served.stop()
        if relay.server is not None:
            await relay.stop()


@pytest.mark.gen_test(timeout=90)
async def test_messages_lost_in_an_outage_are_told_to_every_process_s_clients(
    settings: Settings,
    app: tornado.web.Application,
    api: Api,
    base_url: str,
    clients: Any,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a review: a process cut off from Redis delivers its emits to its own
    sockets only; once Redis was back, the other processes' clients never knew they had
    missed them (their replays said complete). Now the process marks the loss in the
    stream when Redis answers again: a replay across it says incomplete."""
    relay, cut_off = await behind_relay(settings)
    msg = app.settings["registry"]["transomMsgClient"]
    caplog.set_level(logging.WARNING, "transom_socketio.realtime.redis_history")
    try:
        client = await recovering(clients, api, base_url)  # on this process, not cut off
        await away(app, client)
        await msg.emitToUsers(client.user.id, "tick", {"n": "kept"})
        await relay.stop()
        cut_off_msg = cut_off.app.settings["registry"]["transomMsgClient"]
        await cut_off_msg.emitToUsers(client.user.id, "tick", {"n": "lost"})
        await relay.start()  # the same port: the outage ends
        # Once Redis answers it again, the cut-off process says it marked the loss (the
        # client comes back after that line, or after 15 s without it).
        deadline = time.monotonic() + 15
        while "marked where messages were lost" not in caplog.text:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        client.may_connect.set()
        await client.wait_until(lambda: len(client.recoveries()) == 2, within=30)
        assert client.recoveries()[1]["complete"] is False
        assert {"n": "lost"} not in client.payloads()
    finally:
        await cut_off.stop()
        if relay.server is not None:
            await relay.stop()
