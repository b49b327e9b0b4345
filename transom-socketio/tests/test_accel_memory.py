"""The fast path's per-socket memory savings (realtime/accel/: pinger, websocket, streams,
environ, queues) keep engine.io's behaviour: pings, ping timeouts, what the client gets."""

from __future__ import annotations

import asyncio
import collections
import random
import socket as socket_module
import time
from types import SimpleNamespace
from typing import Any

import pytest
import tornado.httputil
import tornado.iostream
from engineio.async_drivers import tornado as tornado_driver
from rawsocket import RawWebSocket

from transom_socketio import registry as keys
from transom_socketio.realtime.accel import environ as accel_environ
from transom_socketio.realtime.accel.pinger import Pinger
from transom_socketio.realtime.accel.queues import Inbox
from transom_socketio.realtime.accel.streams import LightDeque, lighten
from transom_socketio.testing.clients import requires_accel

pytestmark = requires_accel


# ---------------------------------------------------------------------------- LightDeque


def test_light_deque_behaves_as_a_deque_under_the_operations_iostream_uses():
    chance = random.Random(23)  # noqa: S311 - a repeatable sequence, not a secret
    light, reference = LightDeque(), collections.deque()
    for step in range(20_000):
        choice = chance.random()
        if choice < 0.55:
            light.append(step)
            reference.append(step)
        elif reference:
            assert light.popleft() == reference.popleft()
        else:
            with pytest.raises(IndexError):
                light.popleft()
        if chance.random() < 0.01:
            light.clear()
            reference.clear()
        assert len(light) == len(reference)
        assert bool(light) == bool(reference)
        assert list(light) == list(reference)
        if reference:
            assert light[0] == reference[0]
            assert light[-1] == reference[-1]
        else:
            with pytest.raises(IndexError):
                light[0]
            with pytest.raises(IndexError):
                light[-1]


@pytest.mark.gen_test
async def test_a_lightened_stream_writes_everything_in_order():
    left, right = socket_module.socketpair()
    stream, reader = tornado.iostream.IOStream(left), tornado.iostream.IOStream(right)
    try:
        first = stream.write(b"before ")  # may still wait in the buffer: kept, in order
        lighten(stream)
        assert isinstance(stream._write_futures, LightDeque)
        assert isinstance(stream._write_buffer._buffers, LightDeque)
        chunks = [bytes([65 + i % 26]) * (1 + i * 37 % 5000) for i in range(300)]
        writes = [stream.write(chunk) for chunk in chunks]
        expected = b"before " + b"".join(chunks)
        received = await asyncio.wait_for(reader.read_bytes(len(expected)), 10)
        await asyncio.wait_for(asyncio.gather(first, *writes), 10)
        assert received == expected
    finally:
        stream.close()
        reader.close()


# ---------------------------------------------------------------------------- environ


class _Handler:
    def __init__(self) -> None:
        headers = tornado.httputil.HTTPHeaders()
        for name, value in [
            ("Host", "example.test:8000"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("X-Forwarded-Proto", "https"),
            ("X-Custom-Thing", "a"),
            ("X-Custom-Thing", "b"),
        ]:
            headers.add(name, value)
        self.request = tornado.httputil.HTTPServerRequest(
            method="GET",
            uri="/socket.io/?EIO=4&transport=websocket",
            headers=headers,
            body=b"hello",
        )


@pytest.mark.gen_test
async def test_the_environ_is_the_one_engineio_builds():
    handler = _Handler()
    ours, theirs = (
        accel_environ.translate_request(handler),
        tornado_driver.translate_request(handler),
    )
    assert await ours.pop("wsgi.input").read() == await theirs.pop("wsgi.input").read() == b"hello"
    assert ours == theirs
    assert list(ours) == list(theirs)
    again = accel_environ.translate_request(_Handler())
    shared = [key for key in ours if key.startswith("HTTP_")]
    assert all(any(k is key for k in again) for key in shared)  # one key string for all


# ---------------------------------------------------------------------------- Inbox


@pytest.mark.gen_test
async def test_next_message_is_a_future_of_the_next_message_or_oserror_once_closed():
    inbox = Inbox()
    inbox.put_nowait("queued")
    assert await inbox.next_message() == "queued"
    waiting = inbox.next_message()
    assert not waiting.done()
    inbox.put_nowait(b"bytes")
    assert await waiting == b"bytes"
    cancelled = inbox.next_message()
    cancelled.cancel()  # engine.io's wait timed out: the next message must not be lost
    inbox.put_nowait("kept")
    assert await inbox.next_message() == "kept"
    closing = inbox.next_message()
    inbox.put_nowait(None)  # the handler's on_close
    with pytest.raises(OSError):
        await closing
    inbox.put_nowait(None)
    with pytest.raises(OSError):
        await inbox.next_message()
    inbox.put_nowait("raw")
    assert await inbox.get() == "raw"  # the handler's get_next_message, unchanged


# ---------------------------------------------------------------------------- Pinger


class _Socket:
    def __init__(self, server: Any, closed: bool = False) -> None:
        self.server = server
        self.closing = False
        self.closed = closed
        self.last_ping: float | None = None
        self.sent: list[Any] = []

    async def send(self, pkt: Any) -> None:
        self.sent.append((pkt.encode(), time.time()))


@pytest.mark.gen_test
async def test_the_pinger_pings_each_socket_one_interval_after_it_was_scheduled():
    server = SimpleNamespace(ping_interval=0.3)
    pinger = Pinger(server)
    first, gone = _Socket(server), _Socket(server, closed=True)
    started = time.time()
    pinger.schedule(first)
    pinger.schedule(gone)
    await asyncio.sleep(0.15)
    second = _Socket(server)
    pinger.schedule(second)
    assert len(pinger) == 3
    await asyncio.sleep(0.25)
    assert [packet for packet, _ in first.sent] == ["2"]
    assert first.sent[0][1] - started >= 0.3 - 0.06
    assert first.last_ping is not None and first.last_ping <= first.sent[0][1]
    assert gone.sent == [] and gone.last_ping is None  # closed: no PING, as engine.io
    assert second.sent == []  # not due yet
    await asyncio.sleep(0.3)
    assert [packet for packet, _ in second.sent] == ["2"]
    assert second.sent[0][1] - started >= 0.45 - 0.06
    assert len(pinger) == 0
    pinger.schedule(first)
    pinger.close()
    await asyncio.sleep(0.4)
    assert len(first.sent) == 1


# ---------------------------------------------------------------------------- on the app


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"fast_fanout": True, "socketio_ping_interval": 1, "socketio_ping_timeout": 1}


async def _open(api: Any, base_url: str) -> RawWebSocket:
    user = await api.new_user()
    raw = await RawWebSocket.open(base_url)
    await raw.connect(await api.socket_token(user))
    return raw


@pytest.mark.gen_test(timeout=30)
async def test_an_idle_websocket_is_pinged_and_stays_without_a_task_of_its_own(
    app, api, sockets, settings_overrides
):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    assert sio.fast is not None
    raws = [await _open(api, sockets.base_url) for _ in range(4)]
    try:
        await asyncio.sleep(0.2)
        # engine.io's session task per socket, and none of the tasks the fast path does
        # without: the writer, the per-message wait, the ping task.
        names = [task.get_coro().__qualname__ for task in asyncio.all_tasks()]
        assert names.count("AsyncServer.handle_request") >= len(raws)
        assert not [
            name
            for name in names
            if name.rsplit(".", 1)[-1] in {"writer", "websocket_wait", "_send_ping"}
        ]
        pings = [0] * len(raws)

        async def answer(i: int) -> None:  # every PING answered: the session stays up
            while (frame := await raws[i].connection.read_message()) is not None:
                if frame == "2":
                    pings[i] += 1
                    await raws[i].send("3")

        readers = [asyncio.ensure_future(answer(i)) for i in range(len(raws))]
        await asyncio.sleep(3.5)  # past the ping timeout (1 s + 1 s), more than once
        assert all(count >= 2 for count in pings), pings
        assert not any(reader.done() for reader in readers)
        assert len([s for s in sio.eio.sockets.values() if not s.closed]) >= len(raws)
        for reader in readers:
            reader.cancel()
    finally:
        for raw in raws:
            raw.connection.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_websocket_that_stops_answering_pings_is_closed(
    app, api, sockets, settings_overrides
):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    raw = await _open(api, sockets.base_url)
    eio_sids = set(sio.eio.sockets)
    started = time.monotonic()
    frames = []
    reading = asyncio.ensure_future(raw.connection.read_message())
    while time.monotonic() - started < 10:  # read without answering the PINGs
        await asyncio.wait([reading], timeout=0.5)
        if reading.done():
            if reading.result() is None:
                break
            frames.append(reading.result())
            reading = asyncio.ensure_future(raw.connection.read_message())
    # engine.io closes it once its ping timeout has passed (interval 1 s + timeout 1 s).
    assert time.monotonic() - started < 8
    assert "2" in frames
    for _ in range(50):
        if not eio_sids & {s for s, sock in sio.eio.sockets.items() if not sock.closed}:
            break
        await asyncio.sleep(0.1)
    assert not eio_sids & {s for s, sock in sio.eio.sockets.items() if not sock.closed}
