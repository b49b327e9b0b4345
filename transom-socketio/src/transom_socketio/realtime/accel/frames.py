"""Tornado's WebSocket read loop without a task, a coroutine chain or a frame per idle socket.

Tornado serves an open WebSocket from the request handler's own task: the handler's
``_execute``, its ``get`` (the app's, engine.io's, Tornado's), the protocol's
``accept_connection`` and ``_accept_connection``, then ``_receive_frame_loop``,
``_receive_frame`` and ``_read_bytes``, all suspended while the socket is idle, waiting
for the next frame's first two bytes: a Task, its context and nine coroutine frames,
about 3.5 KB per socket.

``LightProtocol`` is Tornado's ``WebSocketProtocol13`` with that loop run from
callbacks: once the handshake is done and ``open`` has run, ``_receive_frame_loop``
asks the stream for the next frame's first two bytes and returns, so the handler's
task ends. When they come, Tornado's own ``_receive_frame`` reads and handles that one
frame (the same checks, limits, close codes and callbacks, awaited the same way),
driven step by step on the futures it awaits; then the next frame is waited for.
What Tornado's loop does at its end is done at the same points: ``_abort`` when the
stream closes, the handler's ``on_ws_connection_close`` in every case, and for an
error escaping a frame what ``accept_connection`` and the handler's ``_execute`` did
with it (a ``ValueError``: DEBUG line and abort; anything else logged as the handler
logs an uncaught exception). Like Tornado's loop it lets other callbacks run after
every 256 KB or so read in one go.

Its ``write_message`` is Tornado's without the task Tornado wraps every message in
(a coroutine, a task and two event-loop turns, only to turn the stream's
``StreamClosedError`` into ``WebSocketClosedError``): it returns the stream's own write
future when that is already settled cleanly (the usual case: a small frame is written
at once), and otherwise a future that settles with it, the error translated as
Tornado's wrapper translates it. A message to a socket, an ack, a handshake's OPEN and
CONNECT go that way; the fan-out writes its frames itself (``accel/fanout.py``).

Used only for a connection without permessage-deflate (the app turns compression off,
``realtime/server.py``); with compression the handler keeps Tornado's protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, cast

import tornado.escape
import tornado.websocket
from tornado.iostream import StreamClosedError

gen_log = logging.getLogger("tornado.general")

# Tornado's read loop yields to the event loop after this much work (its constants).
_YIELD_THRESHOLD = getattr(tornado.websocket, "_YIELD_THRESHOLD", 256 * 1024)
_FRAME_YIELD_COST = getattr(tornado.websocket, "_FRAME_YIELD_COST", 1024)
_HEADER_BYTES = 2
_FIN, _OPCODE = 0x80, 0x0F
# Opcodes of frames that are not a whole message, but PING (counted by the handler's
# ``on_ping``, on either path): a continuation, CLOSE, PONG.
_NOT_A_MESSAGE = frozenset({0x0, 0x8, 0xA})


def _within_budget(handler: Any) -> bool:
    """Whether the handler's session may take one more frame (the app's transport guard,
    ``realtime/transport.py``; a handler without one, always)."""
    spend = getattr(handler, "frames_within_budget", None)
    return spend is None or bool(spend(1))


class LightProtocol(tornado.websocket.WebSocketProtocol13):
    """``WebSocketProtocol13`` whose read loop holds no task while it waits."""

    # In slots: an attribute added to the instance's dict after Tornado's __init__
    # would turn its key-sharing dict into a dict of its own (~1.3 KB more per socket).
    __slots__ = ("_frame", "_frame_start", "_header", "_work")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A frame's first two bytes, read while waiting for the frame: ``_read_bytes``
        # hands them to Tornado's ``_receive_frame`` as its first read.
        self._header: bytes | None = None
        self._frame: Coroutine[Any, Any, None] | None = None  # the frame being read
        self._work = 0  # Tornado's loop's measure of work done without yielding
        self._frame_start = 0  # ``_wire_bytes_in`` as the frame being read started

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> asyncio.Future[None]:
        """Tornado's ``write_message`` (no compressor here), without its task."""
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        payload = tornado.escape.utf8(message)
        self._message_bytes_out += len(payload)
        try:
            written = self._write_frame(True, 0x2 if binary else 0x1, payload)
        except StreamClosedError:
            raise tornado.websocket.WebSocketClosedError() from None
        if written.done() and not written.cancelled() and written.exception() is None:
            return written
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        written.add_done_callback(lambda done: _settle(settled, done))
        return settled

    async def _receive_frame_loop(self) -> None:
        """Start reading frames, and return (the handler's task ends)."""
        self._next_frame()

    async def _read_bytes(self, n: int) -> bytes:
        header = self._header
        if header is not None and n == _HEADER_BYTES:
            self._header = None
            self._wire_bytes_in += n
            return header
        return await super()._read_bytes(n)

    # ------------------------------------------------------------------ the loop

    def _next_frame(self) -> None:
        """``while not self.client_terminated: await self._receive_frame()``, up to the
        first wait."""
        while True:
            if self.client_terminated:
                self._loop_ended()
                return
            try:
                header = cast("asyncio.Future[bytes]", self.stream.read_bytes(_HEADER_BYTES))
            except StreamClosedError:
                self._closed()
                return
            except BaseException as error:
                self._failed(error)
                return
            if not header.done():
                header.add_done_callback(self._header_arrived)
                return
            if not self._start_frame(header):
                return

    def _header_arrived(self, header: asyncio.Future[bytes]) -> None:
        if self._start_frame(header):
            self._next_frame()

    def _start_frame(self, header: asyncio.Future[bytes]) -> bool:
        """Read and handle the frame whose first bytes ``header`` holds; True when it
        was done without waiting (the loop goes on)."""
        try:
            self._header = header.result()
        except StreamClosedError:
            self._closed()
            return False
        except BaseException as error:
            self._failed(error)
            return False
        first = self._header[0]
        whole_message = bool(first & _FIN) and (first & _OPCODE) not in _NOT_A_MESSAGE
        if not whole_message and not _within_budget(self.handler):
            # A control frame, or a piece of a fragmented message: read by Tornado before
            # any message is, each costs the server a few µs (found by a review: 65,536
            # one-byte pieces of one message cost ~0.45 s). Each spends the session's
            # inbound budget; once it is spent, the socket goes.
            self._header = None
            self._abort()
            self._loop_ended()
            return False
        self._frame_start = self._wire_bytes_in
        self._frame = self._receive_frame()
        return self._drive()

    def _drive(self, error: BaseException | None = None) -> bool:
        """Run the frame's coroutine (throwing ``error`` into it, if any) to its next
        wait (False) or its end (True, when the loop goes on now)."""
        frame = self._frame
        assert frame is not None
        try:
            awaited = frame.send(None) if error is None else frame.throw(error)
        except StopIteration:
            self._frame = None
            self._header = None
            self._work += _FRAME_YIELD_COST + self._wire_bytes_in - self._frame_start
            if self._work >= _YIELD_THRESHOLD:
                self._work = 0
                asyncio.get_running_loop().call_soon(self._next_frame)
                return False
            return True
        except StreamClosedError:
            self._frame = None
            self._closed()
            return False
        except BaseException as error:
            self._frame = None
            self._failed(error)
            return False
        if awaited is None:  # a bare yield (asyncio.sleep(0)): resume on the next turn
            asyncio.get_running_loop().call_soon(self._resume, None)
        elif getattr(awaited, "_asyncio_future_blocking", None):
            awaited._asyncio_future_blocking = False  # as asyncio's Task does
            awaited.add_done_callback(self._resume)
        else:
            # What asyncio's Task does with a yield it cannot wait on (none in Tornado
            # 6.6.1's ``_receive_frame``): throw it back into the coroutine, whose error
            # then ends the socket as any other would.
            bad_yield = RuntimeError(f"WebSocket frame reader got bad yield: {awaited!r}")
            asyncio.get_running_loop().call_soon(self._resume_with, bad_yield)
        return False

    def _resume(self, _awaited: Any) -> None:
        # The frame's coroutine reads the result (or the error) of what it awaited.
        if self._frame is not None and self._drive():
            self._next_frame()

    def _resume_with(self, error: BaseException) -> None:
        if self._frame is not None and self._drive(error):
            self._next_frame()

    # ------------------------------------------------------------------ its end

    def _closed(self) -> None:
        # Tornado's loop: ``except StreamClosedError: self._abort()``, then its finally.
        self._abort()
        self._loop_ended()

    def _loop_ended(self) -> None:
        # Tornado's loop's finally.
        self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def _failed(self, error: BaseException) -> None:
        """An error out of the loop: its finally, then what ``accept_connection`` (a
        ValueError, a cancellation) or the handler's ``_execute`` (anything else) did."""
        handler = self.handler
        self._loop_ended()
        if isinstance(error, ValueError):
            gen_log.debug(
                "Malformed WebSocket request received",
                exc_info=(type(error), error, error.__traceback__),
            )
            self._abort()
        elif isinstance(error, asyncio.CancelledError):
            self._abort()
        elif isinstance(error, Exception):
            handler.log_exception(type(error), error, error.__traceback__)
        else:
            raise error


def _settle(settled: asyncio.Future[None], written: asyncio.Future[None]) -> None:
    """Settle ``settled`` as the stream's ``written`` settled, its ``StreamClosedError``
    turned into ``WebSocketClosedError`` (what Tornado's wrapper task did)."""
    if settled.done():
        return
    if written.cancelled():
        settled.cancel()
        return
    error = written.exception()
    if error is None:
        settled.set_result(None)
    elif isinstance(error, StreamClosedError):
        settled.set_exception(tornado.websocket.WebSocketClosedError())
    else:
        settled.set_exception(error)


def light_protocol(handler: Any, params: Any) -> tornado.websocket.WebSocketProtocol13 | None:
    """The protocol for ``handler``'s WebSocket: ``LightProtocol`` where Tornado's would be
    ``WebSocketProtocol13`` without compression, else None (keep Tornado's)."""
    if params.compression_options is not None:
        return None
    return LightProtocol(handler, False, params)
