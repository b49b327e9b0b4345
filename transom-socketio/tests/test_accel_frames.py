"""The WebSocket frames a client sends get the same answer on both switch positions:
Tornado's read loop (FAST_FANOUT=false) and the fast path's (``realtime/accel/frames.py``,
which reads an open WebSocket from callbacks and lets its request's HTTP state go,
``accel/upgraded.py``). Frames are written byte by byte here, as a hostile client would:
fragments, control frames, bad UTF-8, reserved bits, oversized headers, unmasked frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any
from urllib.parse import urlsplit

import pytest
import tornado.websocket

from transom_socketio import registry as keys
from transom_socketio.realtime.accel.frames import LightProtocol

CLOSED = "closed"  # the server ended the TCP connection


def websocket_mask(mask: bytes, data: bytes) -> bytes:
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


@pytest.fixture(params=["fast path", "stock"])
def settings_overrides(request):
    return {
        "fast_fanout": request.param == "fast path",
        "socket_tokens_per_minute_per_user": 0,
        "socketio_max_message_bytes": 4096,
        # Hundreds of pings in one write: PINGs spend the inbound budget (100 by default).
        "socketio_inbound_burst": 1000,
    }


class RawFrames:
    """A WebSocket client that writes its frames byte by byte (RFC 6455)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sid = ""

    @classmethod
    async def open(cls, base_url: str) -> RawFrames:
        url = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        frames = cls(reader, writer)
        opened = await frames.next()
        assert opened[0] == 1 and opened[1].startswith(b"0{"), opened
        frames.sid = json.loads(opened[1][1:])["sid"]  # the engine.io session's
        return frames

    @staticmethod
    def frame(
        opcode: int, payload: bytes, fin: bool = True, masked: bool = True, rsv: int = 0
    ) -> bytes:
        head = bytes([(0x80 if fin else 0) | rsv | opcode])
        mask_bit = 0x80 if masked else 0
        size = len(payload)
        if size < 126:
            head += bytes([mask_bit | size])
        elif size <= 0xFFFF:
            head += bytes([mask_bit | 126]) + struct.pack("!H", size)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
        if not masked:
            return head + payload
        mask = os.urandom(4)
        return head + mask + websocket_mask(mask, payload)

    def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))

    async def next(self, within: float = 10) -> tuple[int, bytes] | str:
        """The next frame (opcode, payload) from the server, or CLOSED."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), within)
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return head[0] & 0x0F, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return CLOSED

    async def until_closed(self, within: float = 10) -> list[Any]:
        """Every frame the server sends until it hangs up (engine.io PINGs included)."""
        frames: list[Any] = []
        while (frame := await self.next(within)) != CLOSED:
            frames.append(frame)
        return frames

    async def connect(self, token: str, fragments: int = 1) -> None:
        """Socket.IO's CONNECT, in ``fragments`` frames; the server must accept it."""
        message = ("40" + json.dumps({"token": token})).encode()
        step = -(-len(message) // fragments)
        parts = [message[i : i + step] for i in range(0, len(message), step)]
        self.send(
            *(
                self.frame(1 if i == 0 else 0, part, fin=i == len(parts) - 1)
                for i, part in enumerate(parts)
            )
        )
        reply = await self.next()
        assert reply[0] == 1 and reply[1].startswith(b"40{"), reply

    def close(self) -> None:
        self.writer.close()


async def _connected(api: Any, base_url: str, fragments: int = 1) -> RawFrames:
    user = await api.new_user()
    frames = await RawFrames.open(base_url)
    await frames.connect(await api.socket_token(user), fragments=fragments)
    return frames


async def every_session_ends(sio: Any, within: float = 5) -> None:
    """Wait until engine.io holds no open session; fail if one is still open ``within``."""
    deadline = asyncio.get_running_loop().time() + within
    while [s for s in sio.eio.sockets.values() if not s.closed]:
        assert asyncio.get_running_loop().time() < deadline, "an engine.io session is still open"
        await asyncio.sleep(0.1)


def _close_code(frame: Any) -> int | None:
    assert frame[0] == 8, frame
    return struct.unpack("!H", frame[1][:2])[0] if len(frame[1]) >= 2 else None


@pytest.mark.gen_test(timeout=30)
async def test_fragments_control_frames_and_pipelined_messages(
    app, api, sockets, settings_overrides
):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    frames = await _connected(api, sockets.base_url, fragments=3)  # CONNECT in 3 fragments
    try:
        (eio_sid,) = sio.eio.sockets
        handler = sio.opening_request(eio_sid)
        fast = settings_overrides["fast_fanout"] and sio.fast is not None
        # The fast path's read loop and request; Tornado's own on the other position.
        assert isinstance(handler.ws_connection, LightProtocol) == fast
        assert (handler.request.connection is None) == fast
        assert handler.request.remote_ip == "127.0.0.1"
        running = [task.get_coro().__qualname__ for task in asyncio.all_tasks()]
        assert ("RequestHandler._execute" in running) != fast  # no task reads the frames
        # A ping between two fragments of one message: answered, the message still whole.
        frames.send(
            frames.frame(1, b'42["no', fin=False),
            frames.frame(9, b"hello"),
            frames.frame(0, b'pe"]'),
        )
        assert await frames.next() == (0xA, b"hello")
        # Many frames in one write: every one read, in order (the engine.io PONGs pass,
        # and a ping behind them is answered).
        frames.send(*(frames.frame(1, b"3") for _ in range(20)), frames.frame(9, b"last"))
        assert await frames.next() == (0xA, b"last")
        # Over 256 KB of frames in one write (the read loop lets other callbacks run on
        # the way): every one read; the last ping is answered last.
        frames.send(*(frames.frame(9, b"%03d" % i + b"p" * 120) for i in range(400)))
        while (pong := await frames.next())[1][:3] != b"399":
            assert pong[0] == 0xA, pong
        # An unmasked frame is read as it comes (Tornado does not insist on the mask).
        frames.send(frames.frame(9, b"plain", masked=False))
        assert await frames.next() == (0xA, b"plain")
        # A large message, under the limit, read across many TCP segments.
        frames.send(frames.frame(1, b'42["note","' + b"x" * 3000 + b'"]'))
        frames.send(frames.frame(9, b"after"))
        assert await frames.next() == (0xA, b"after")
        # The client's close: echoed with its code, then the server hangs up.
        frames.send(frames.frame(8, struct.pack("!H", 1000) + b"bye"))
        rest = [f for f in await frames.until_closed() if f != (1, b"2")]
        assert [_close_code(f) for f in rest] == [1000]
    finally:
        frames.close()


@pytest.mark.parametrize(
    "bad, close_code",
    [
        (RawFrames.frame(1, b"\xff\xfe not utf-8"), None),  # invalid UTF-8: aborted
        (RawFrames.frame(1, b"42", rsv=0x40), None),  # a reserved bit: aborted
        (RawFrames.frame(9, b"x" * 126), None),  # a control frame over 125 bytes
        (RawFrames.frame(9, b"x", fin=False), None),  # a fragmented control frame
        (RawFrames.frame(0, b"42"), None),  # a continuation of nothing
        (RawFrames.frame(1, b"4", fin=False) + RawFrames.frame(1, b"2"), None),  # new mid-way
        (RawFrames.frame(0xB, b""), None),  # an unknown opcode
        (RawFrames.frame(1, b"x" * 5000), 1009),  # over the limit: refused by its header
        (RawFrames.frame(1, b"x" * 3000, fin=False) + RawFrames.frame(0, b"x" * 3000), 1009),
    ],
    ids=[
        "utf-8",
        "rsv",
        "long-control",
        "fragmented-control",
        "lone-continuation",
        "interrupted",
        "opcode",
        "too-big",
        "too-big-fragments",
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_bad_frame_ends_the_connection_as_tornado_does(app, api, sockets, bad, close_code):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    frames = await _connected(api, sockets.base_url)
    try:
        frames.send(bad)
        rest = [f for f in await frames.until_closed() if f != (1, b"2")]
        # 1009: a close frame first; the others: the TCP connection dropped at once.
        assert [_close_code(f) for f in rest] == ([close_code] if close_code else [])
    finally:
        frames.close()
    await every_session_ends(sio)  # engine.io's session ends with the connection


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_dropped_mid_frame_ends_the_session(app, api, sockets):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    frames = await _connected(api, sockets.base_url)
    frames.send(frames.frame(1, b'42["note","' + b"x" * 2000 + b'"]')[:500])  # half a frame
    await asyncio.sleep(0.2)
    frames.writer.transport.abort()
    await every_session_ends(sio)


@pytest.mark.gen_test(timeout=30)
async def test_the_sockets_of_one_user_share_its_snapshot(app, api, sockets):
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    user = await api.new_user()
    clients = [await sockets.connect(await api.socket_token(user)) for _ in range(3)]
    snapshots = [
        (await sio.get_session(sid, namespace="/"))["user"]
        for sid in [c.client.get_sid("/") for c in clients]
    ]
    assert snapshots[0]["username"] == user.username
    assert all(s is snapshots[0] for s in snapshots)
    # Shared, so nobody may change it through one socket's session.
    with pytest.raises(TypeError):
        snapshots[0]["username"] = "mallory"
    with pytest.raises(TypeError):
        snapshots[0].update(groups=["staff"])
    assert (await sio.get_session(clients[1].client.get_sid("/"), namespace="/"))["user"][
        "username"
    ] == user.username


@pytest.mark.gen_test(timeout=30)
async def test_a_message_written_to_a_socket_settles_as_tornados_write_does(
    app, api, sockets, caplog
):
    """The fast path writes a socket's messages without the task Tornado wraps each one
    in (``accel/frames.py``): what ``write_message`` returns still settles once the
    message is written, fails with ``WebSocketClosedError`` when the connection goes
    with the message unsent, and nothing is left unretrieved."""
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    frames = await _connected(api, sockets.base_url)
    handler = sio.opening_request(frames.sid)
    written = handler.write_message('42["note","hello"]')
    assert await asyncio.wait_for(written, 5) is None
    assert await frames.next() == (1, b'42["note","hello"]')
    # More than the connection's buffers hold, to a client that reads no more: it waits.
    unsent = handler.write_message("4" + "x" * (32 * 1024 * 1024))
    await asyncio.sleep(0.3)
    assert not unsent.done()
    frames.writer.transport.abort()
    with pytest.raises(tornado.websocket.WebSocketClosedError):
        await asyncio.wait_for(unsent, 10)
    await every_session_ends(sio)
    with pytest.raises(tornado.websocket.WebSocketClosedError):
        handler.write_message('42["note","too late"]')
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


class BadYield:
    """An awaitable whose wait is neither a future nor a bare yield."""

    def __await__(self) -> Any:
        yield "not a future"


# The fast path's frame reader only: Tornado's own loop runs in an asyncio Task.
@pytest.mark.parametrize("settings_overrides", ["fast path"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_a_frame_reader_that_yields_no_future_ends_its_socket_as_a_task_would(
    app, api, sockets, monkeypatch, caplog
):
    """No Tornado release the version guard allows does this; if one did, the socket
    would end (as an asyncio Task throws a bad yield back into its coroutine) instead
    of hanging with its frame half read."""
    sio = app.settings["registry"][keys.SOCKET_SERVER]
    frames = await _connected(api, sockets.base_url)
    receive_frame = LightProtocol._receive_frame

    async def receive_frame_with_a_bad_yield(self: LightProtocol) -> None:
        await BadYield()
        await receive_frame(self)

    monkeypatch.setattr(LightProtocol, "_receive_frame", receive_frame_with_a_bad_yield)
    try:
        frames.send(frames.frame(1, b'42["note","hello"]'))
        await frames.until_closed()
    finally:
        frames.close()
    await every_session_ends(sio)
    assert any(
        "bad yield" in str(record.exc_info[1]) for record in caplog.records if record.exc_info
    )
