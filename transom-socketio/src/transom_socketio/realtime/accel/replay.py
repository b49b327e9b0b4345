"""Replaying a recovering socket's missed messages a chunk at a time, in one write.

A replay (``realtime/recovery.py``) hands a socket up to ``history.REPLAY_CHUNK``
missed messages at a time. Through engine.io each one costs a queue round trip, a
writer wake-up, a Tornado frame and the task Tornado wraps it in, and python-socketio
encodes it for each socket again: a reconnect storm of 1,000 sockets that missed 100
messages spent most of its 7 s of server CPU there. Here:

- each missed message's WebSocket frame is built once (the fan-out's encoder,
  ``FanoutManager._frame``) and kept by history id, so a storm that replays the same
  entries to every socket encodes each of them once. A kept frame is used only for
  the very same arguments object (an edited entry carries new ones), and the cache
  is bounded (``FRAMES_KEPT``);
- the frames of a chunk (no more than the replay's unsent-bytes bound at once) are
  joined and written with one ``IOStream.write``, whose future tells the replay's flow
  control when the kernel took them.

The same conditions as the fan-out keep each socket's packets in order: only the
WebSocket engine.io bound to the socket, open, with nothing in engine.io's queue
(not even a packet taken out but not yet written) and not past its ping timeout.
Otherwise (long-polling, a packet queued ahead, binary attachments) the replay
takes engine.io's path, as with FAST_FANOUT off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import tornado.iostream

from ..rooms import NAMESPACE

# Frames kept for replays to come (about 150 bytes each for a small message).
FRAMES_KEPT = 4096
# Event-loop passes a chunk waits for engine.io's queue of the socket to empty (the
# CONNECT answer and the ``recovery`` event go through it) before taking its path.
QUEUE_PASSES = 3


class ReplayWriter:
    """Frames of replayed messages, and the stream a replay may write them to."""

    def __init__(self, sio: Any) -> None:
        self._sio = sio
        # history id -> (event, arguments object, frame)
        self._frames: dict[Any, tuple[str, Any, bytes]] = {}

    def frame(self, entry: Any, delivered: Callable[[Any], tuple[Any, ...]]) -> bytes | None:
        """The WebSocket frame of a history entry as the socket receives it (its
        arguments, then its ``{"position"}``); None for binary attachments.
        ``delivered(entry)`` gives those arguments when the frame is not kept already."""
        kept = self._frames.get(entry.id)
        if kept is not None and kept[1] is entry.args and kept[0] == entry.event:
            return kept[2]
        built = self._sio.manager._frame(entry.event, delivered(entry), NAMESPACE)
        if built is None:
            return None
        frame: bytes = built[1]
        if len(self._frames) >= FRAMES_KEPT:
            self._frames.clear()
        self._frames[entry.id] = (entry.event, entry.args, frame)
        return frame

    async def stream(self, eio_sid: str) -> tornado.iostream.IOStream | None:
        """The stream to write a chunk to now, or None: engine.io's path."""
        for _ in range(QUEUE_PASSES):
            target = self._sio.manager._resolve(eio_sid)
            if target is None:
                return None
            sock, queue, _connection, stream = target
            if sock.last_ping and sock.last_ping < time.time() - self._sio.eio.ping_timeout:
                return None
            if not queue._unfinished_tasks:
                return stream
            await asyncio.sleep(0)
        return None

    @staticmethod
    def write(stream: tornado.iostream.IOStream, frames: list[bytes]) -> asyncio.Future[None]:
        """Write ``frames`` at once; the future resolves when the kernel has them all."""
        written = stream.write(b"".join(frames))
        written.add_done_callback(_retrieve)
        return written


def _retrieve(written: asyncio.Future[None]) -> None:
    """A write that a closing connection cut short fails its future: the close is
    engine.io's to handle; retrieve the error so it is not logged as unhandled."""
    if not written.cancelled():
        written.exception()
