"""Fast fan-out: encode an emit once, write the same WebSocket frame to every socket.

python-socketio delivers an emit to N sockets with N tasks, N engine.io queue
round trips, N writer wake-ups and N Tornado frame encodings, each wrapped in
another task. That costs ~185 µs of CPU per delivery; Node's socket.io needs ~17.
This manager keeps python-socketio's protocol and bookkeeping (rooms, sessions,
acks, pings, polling) and replaces only the delivery of plain events to sockets
that are on the WebSocket transport and have nothing queued:

- the Socket.IO packet, the Engine.IO packet and the WebSocket frame are built
  once per emit;
- for each socket, if engine.io has no packet in flight for it (its queue has no
  unfinished work: not even one taken out but not yet written), the frame is
  added to that socket's batch. Which stream a socket is written to is found once
  and remembered (``_targets``): later emits only check what can change (the
  session closing, its queue, its ping timeout, the WebSocket closing), about a
  third less CPU per delivery at 1,000 sockets;
- at the end of the event-loop pass, each socket's batch is written at once: one
  ``socket.send`` when Tornado's write buffer is empty, Tornado's
  ``IOStream.write`` (which keeps the order of bytes on the stream) for a partial
  send or behind bytes already waiting. A burst of K emits thus costs one system
  call per socket instead of K. Anything that could write to the socket later in
  the same pass (engine.io's writer task, woken by a packet queued after the
  batch began) runs after the flush, which was scheduled first;
- anything else (polling or upgrading sockets, packets queued ahead, binary
  attachments, acknowledgement callbacks, a socket past its ping timeout) takes
  python-socketio's normal path, so per-socket order is never broken. A socket on
  its WebSocket with packets queued ahead gets the packet put behind them at once,
  as engine.io's ``send`` does, rather than in a task the emit would wait for:
  that wait ended the pass, so one ping pending on one socket cost every socket
  of the room a system call per emit.

Frames are sent uncompressed (legal even where permessage-deflate was agreed).
Large rooms are written in chunks that yield to the event loop.

Only the transport engine.io itself bound to a socket is ever written to: the
handler of a WebSocket that opened the session, or of one whose upgrade engine.io
completed (``websocket_handlers``, filled by ``accel/engine.py``). Nothing taken
from a request (its ``?sid=``) identifies a socket's transport here.

This leans on internals of python-engineio, python-socketio and Tornado, which is
why it lives in ``realtime/accel/``: it runs only with the library versions it was
tested with (``accel/versions.py``) and FAST_FANOUT=true; the tests run every
delivery check with both paths.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import tornado.iostream
import tornado.websocket
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .indexed_rooms import IndexedRooms

Handler = tornado.websocket.WebSocketHandler
# A socket's engine.io socket, its outgoing queue, its WebSocket connection and stream.
Target = tuple[Any, Any, Any, tornado.iostream.IOStream]

_TEXT_FIN = 0x81  # FIN bit + text opcode


def websocket_text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _TEXT_FIN, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", _TEXT_FIN, 126, length)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, length)
    return header + payload


class FanoutManager(IndexedRooms):
    """A room manager whose local delivery writes pre-built frames directly.

    ``fast_fanout`` turns the direct writes off (a test switches it mid-run);
    ``websocket_handlers`` maps engine.io session ids to the Tornado handler of
    the WebSocket engine.io upgraded them to.
    """

    fast_fanout = True
    # Frames batched before an emit yields to the event loop, which then writes them
    # (about a microsecond each to batch, and a system call per socket to write).
    chunk_size = 8192

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket_handlers: dict[str, Handler] = {}
        # What ``_resolve`` found for a socket (eio_sid -> its engine.io socket, queue,
        # WebSocket connection and stream), so that later emits only check its state.
        self._targets: dict[str, Target] = {}
        # Frames waiting for the end of this event-loop pass, per stream, in order.
        self._batches: dict[tornado.iostream.IOStream, list[bytes]] = {}
        self._batched_frames = 0

    async def deliver(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> None:
        if namespace not in self.rooms:
            return
        frame = self._frame(event, data, namespace) if self.fast_fanout and not callback else None
        if frame is None:  # off, an acknowledgement callback, or binary attachments
            await super().deliver(event, data, namespace, room, skip_sid, callback, **kwargs)
            return
        message, frame_bytes = frame
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        slow: list[asyncio.Task[None]] = []
        fast = normal = 0
        # A socket whose last ping is older than this is past its ping timeout.
        stale = time.time() - self.server.eio.ping_timeout
        targets = self._targets
        batches = self._batches
        # This loop is what a delivery costs, so it is written out inline. A socket's
        # stream is found once (``_resolve``) and remembered; each emit then checks
        # only what can change: the session or its WebSocket closing (forget it), a
        # packet in its queue or a late ping (this packet goes through the queue).
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            target = targets.get(eio_sid) or self._resolve(eio_sid)
            if target is not None:
                sock, queue, connection, stream = target
                if (
                    sock.closing
                    or sock.closed
                    or connection.client_terminated
                    or connection.server_terminated
                    or stream._closed
                ):
                    del targets[eio_sid]
                elif not queue._unfinished_tasks and not (
                    sock.last_ping and sock.last_ping < stale
                ):
                    if not self._batched_frames:
                        asyncio.get_running_loop().call_soon(self._flush)
                    self._batched_frames += 1
                    batch = batches.get(stream)
                    if batch is None:
                        batches[stream] = [frame_bytes]
                    else:
                        batch.append(frame_bytes)
                    fast += 1
                    if self._batched_frames >= self.chunk_size:
                        await asyncio.sleep(0)  # the batches so far are written meanwhile
                        batches = self._batches
                    continue
            # The normal path: the packet joins the socket's queue, behind any packet
            # already there, and engine.io's writer sends it. For a socket on its
            # WebSocket it is put there at once, as engine.io's ``send`` would, so later
            # emits in this pass see it queued and this emit does not end the pass: one
            # ping waiting in one socket's queue must not cost every socket a system
            # call per emit. Long-polling ones keep engine.io's own ``send``, as before:
            # an emit that reaches one waits for it, so a poll is answered with what
            # came during one round trip, not a whole burst (the python-engineio client
            # refuses more than 16 packets in one answer).
            sock = self.server.eio.sockets.get(eio_sid)
            if (
                sock is not None
                and sock.upgraded
                and not sock.closed
                and not (sock.last_ping and sock.last_ping < stale)
            ):
                sock.queue.put_nowait(message)
                normal += 1
            else:  # long-polling, gone, or past its ping timeout: engine.io's send
                task = self.server._send_eio_packet(eio_sid, message)
                slow.append(asyncio.create_task(task))
        self.delivered_fast += fast
        self.delivered_normal += normal + len(slow)
        if slow:
            await asyncio.wait(slow)

    def _frame(self, event: str, data: Any, namespace: str) -> tuple[Any, bytes] | None:
        """The Engine.IO packet and its WebSocket frame, or None for binary payloads."""
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        if not isinstance(encoded, str):  # binary attachments travel as several packets
            return None
        message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        return message, websocket_text_frame(message.encode().encode())

    def _resolve(self, eio_sid: str) -> Target | None:
        """Find and remember the stream of a socket the fast path may write to: on the
        WebSocket engine.io bound to it, and open. None: the normal path."""
        sock = self.server.eio.sockets.get(eio_sid)
        if sock is None or not sock.upgraded or sock.closing or sock.closed:
            return None
        handler = self.websocket_handlers.get(eio_sid)  # upgraded by engine.io
        if handler is None:
            # Opened as a WebSocket: the request that created the session is its transport
            # (for one opened by long-polling it is a finished GET, without ws_connection).
            environ = self.server.environ.get(eio_sid)
            handler = environ and environ.get("tornado.handler")
        connection = getattr(handler, "ws_connection", None)
        if connection is None or connection.is_closing():
            return None
        stream = connection.stream
        if type(stream) is not tornado.iostream.IOStream or stream.closed():
            return None  # TLS streams and closed ones: the normal path
        target = self._targets[eio_sid] = (sock, sock.queue, connection, stream)
        return target

    def forget(self, eio_sid: str) -> None:
        """Drop what was resolved for a socket whose transport or session ended."""
        self._targets.pop(eio_sid, None)

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        eio_sid = self.rooms.get(namespace, {}).get(None, {}).get(sid)
        if eio_sid is not None:
            self.forget(eio_sid)
        super().basic_disconnect(sid, namespace, **kwargs)

    def _flush(self) -> None:
        """Write every socket's batch: one system call per socket when its buffer is empty."""
        batches, self._batches, self._batched_frames = self._batches, {}, 0
        for stream, frames in batches.items():
            if stream.closed():
                continue
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            if stream._write_buffer:  # bytes waiting: append behind them
                stream.write(data)
                continue
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # a broken connection: Tornado's write reports it and closes the stream
            if sent < len(data):
                stream.write(memoryview(data)[sent:])
