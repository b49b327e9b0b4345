"""WebSocket frames that are not whole messages spend the session's inbound budget
(realtime/transport.py, accel/frames.py), found by a review of the transports: Tornado
reads PINGs (answering each with a PONG) and a fragmented message's pieces before any
message reaches the budget, so one socket that never signed in could keep a core busy
with 7-byte frames, and a 64 KB message of 65,536 pieces cost ~0.45 s for one packet.

Frames are written raw: no client library sends such things.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest

MASK = b"\x00\x00\x00\x00"  # a zero mask: the payload goes as it is
PING, TEXT, CONTINUATION = 0x9, 0x1, 0x0
FRAMES = 2_000  # 20x the burst of the default budget (100)
LONG_CONNECT = {"socketio_connect_timeout_seconds": 120}


def frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + MASK + payload


async def open_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head, head
    return reader, writer


async def read_to_the_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the server writes until it closes the connection, which it must do
    well before the session's connect timeout (``LONG_CONNECT``) would."""
    received = b""
    while chunk := await asyncio.wait_for(reader.read(1 << 16), 10):
        received += chunk
    return received


def pongs_in(received: bytes) -> int:
    return received.count(bytes([0x80 | 0xA, 1]) + b"p")


@pytest.mark.parametrize(
    "settings_overrides",
    [{**LONG_CONNECT, "fast_fanout": True}, {**LONG_CONNECT, "fast_fanout": False}],
    ids=["fast", "python-socketio"],
)
@pytest.mark.gen_test(timeout=60)
async def test_a_flood_of_pings_ends_the_socket_within_its_budget(
    http_server: Any, http_port: int, settings_overrides: Any
):
    reader, writer = await open_websocket(http_port)
    writer.write(frame(True, PING, b"p") * FRAMES)
    received = await read_to_the_end(reader)
    assert pongs_in(received) <= 100 + 10  # the burst, and what the rate refilled
    writer.close()


@pytest.mark.parametrize("settings_overrides", [LONG_CONNECT])
@pytest.mark.gen_test(timeout=60)
async def test_a_message_in_a_flood_of_pieces_ends_the_socket_within_its_budget(
    http_server: Any, http_port: int, settings_overrides: Any
):
    """The fast path's frame reader (accel/frames.py) counts each piece; with the fast
    path off, Tornado's reader only bounds the message's size (64 KB)."""
    reader, writer = await open_websocket(http_port)
    pieces = [frame(False, TEXT, b"4")]
    pieces += [frame(False, CONTINUATION, b"2") for _ in range(FRAMES)]
    writer.write(b"".join(pieces))
    await read_to_the_end(reader)  # closed, before the message ever ends
    writer.close()
