"""What a client that never signs in may hold with long-polling and upgrade requests
(realtime/transport.py, realtime/sessions.py), found by a review of the transports:

- a WebSocket upgrade that says ``transport=polling`` opened a long-polling session no
  pending place counted and no connect timeout ended;
- a session's GETs could wait any number at once, each holding a connection;
- a client's CLOSE gave its session's place back while engine.io kept its waiting GET
  for ping interval + ping timeout, so open, poll, close in a loop held GETs without
  bound.

Raw HTTP over asyncio streams: no client connection pool limits what is sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from rawsocket import SOCKET_PATH

from transom_socketio import registry as keys

CAP = 3
# Short pings: a GET engine.io leaves waiting is answered within 4 s.
SHORT = {"socketio_max_pending_per_address": CAP, "socketio_ping_interval": 2}
SHORT_PINGS = {**SHORT, "socketio_ping_timeout": 2}
BOTH_FAN_OUTS = [{**SHORT_PINGS, "fast_fanout": fast} for fast in (True, False)]


async def http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, float]:
    """One request on its own connection: status, body, seconds taken."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data.split(b"\r\n\r\n", 1)[-1], time.monotonic() - started


async def open_session(port: int) -> str:
    status, body, _ = await http(port, "GET", SOCKET_PATH + "polling")
    assert status == 200, body
    return json.loads(body.decode()[1:])["sid"]


@pytest.mark.parametrize("settings_overrides", BOTH_FAN_OUTS, ids=["fast", "python-socketio"])
@pytest.mark.gen_test(timeout=60)
async def test_an_upgrade_saying_transport_polling_is_refused_and_opens_nothing(
    http_server: Any, base_url: str, http_port: int, registry: Any, settings_overrides: Any
):
    sio = registry[keys.SOCKET_SERVER]
    before = len(sio.eio.sockets)
    url = base_url.replace("http", "ws", 1) + SOCKET_PATH + "polling"
    for _ in range(CAP * 5):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await tornado.websocket.websocket_connect(url)
        assert refused.value.code == 400
    assert len(sio.eio.sockets) == before
    assert len(sio.handshake.pending) == 0
    await open_session(http_port)  # the address's places are all free


@pytest.mark.parametrize("settings_overrides", BOTH_FAN_OUTS, ids=["fast", "python-socketio"])
@pytest.mark.gen_test(timeout=60)
async def test_a_second_waiting_get_of_a_session_is_refused_and_ends_the_session(
    http_server: Any, http_port: int, registry: Any, settings_overrides: Any
):
    sid = await open_session(http_port)
    path = f"{SOCKET_PATH}polling&sid={sid}"
    first = asyncio.ensure_future(http(http_port, "GET", path))
    await asyncio.sleep(0.3)
    status, _, _ = await http(http_port, "GET", path)
    assert status == 400
    # The session ends: its waiting GET is answered (a CLOSE), not held for 4 s.
    status, body, took = await first
    assert status == 200 and body.startswith(b"1"), body
    assert took < 2
    with pytest.raises(KeyError):
        await registry[keys.SOCKET_SERVER].eio.get_session(sid)


@pytest.mark.parametrize("settings_overrides", BOTH_FAN_OUTS, ids=["fast", "python-socketio"])
@pytest.mark.gen_test(timeout=60)
async def test_a_closed_sessions_waiting_get_keeps_its_place_until_it_is_answered(
    http_server: Any, http_port: int, settings_overrides: Any
):
    waiting = []
    for _ in range(CAP):
        sid = await open_session(http_port)
        path = f"{SOCKET_PATH}polling&sid={sid}"
        waiting.append(asyncio.ensure_future(http(http_port, "GET", path)))
        await asyncio.sleep(0.2)
        status, _, _ = await http(http_port, "POST", path, b"1")  # CLOSE
        assert status == 200
    status, _, _ = await http(http_port, "GET", SOCKET_PATH + "polling")
    assert status == 429  # the waiting GETs hold the places
    await asyncio.gather(*waiting)  # engine.io answers them after ping interval + timeout
    await open_session(http_port)
