"""Fast fan-out: encode an emit once, write the same WebSocket frame to every socket.

python-socketio delivers an emit to N sockets with N tasks, N engine.io queue
round trips, N writer wake-ups and N Tornado frame encodings, each wrapped in
another task. That costs ~185 µs of CPU per delivery; Node's socket.io needs ~17.
This manager keeps python-socketio's protocol and bookkeeping (rooms, sessions,
acks, pings, polling) and replaces only the delivery of plain events to sockets
that are on the WebSocket transport and have nothing queued:

- the Socket.IO packet, the Engine.IO packet and the WebSocket frame are built
  once per emit: with the app's JSON (jsonutil), by one encoder built once, the same
  bytes python-socketio's packet writes (a payload with bytes in it takes its path);
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
  batch began) runs after the flush, which every emit schedules (once a pass) before
  it batches or queues anything;
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
from collections import defaultdict
from json import encoder as json_encoder
from typing import Any

import tornado.iostream
import tornado.websocket
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from ... import jsonutil
from ..history import PositionMeta
from .indexed_rooms import IndexedRooms

Handler = tornado.websocket.WebSocketHandler
# A socket's engine.io socket, its outgoing queue, its WebSocket connection and stream.
Target = tuple[Any, Any, Any, tornado.iostream.IOStream]

_TEXT_FIN = 0x81  # FIN bit + text opcode
_SHORT_HEADERS = [bytes((_TEXT_FIN, length)) for length in range(126)]

# The packet encoding ``_frame`` writes itself, for packet classes that keep it.
_STOCK_ENCODE = sio_packet.Packet.encode
_STOCK_INIT = sio_packet.Packet.__init__
# What jsonutil.dumps(value, separators=(",", ":")) writes, by an encoder built once
# (JSONEncoder.encode builds one per call): the standard library's C encoder when it
# has one. Without a circular-reference check: a circular payload raises RecursionError,
# as python-socketio's own binary check of it (``data_is_binary``) does.
_c_make_encoder = getattr(json_encoder, "c_make_encoder", None)  # not in typeshed
if _c_make_encoder is not None:
    _c_encode = _c_make_encoder(
        None, jsonutil.default, json_encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def _encode(value: Any) -> str:
        return "".join(_c_encode(value, 0))

else:  # pragma: no cover - CPython always has it
    _python_encoder = json_encoder.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, default=jsonutil.default
    )

    def _encode(value: Any) -> str:
        return _python_encoder.encode(value)


def _participants(rooms: dict[Any, Any], room: Any) -> dict[str, str]:
    """python-socketio's ``get_participants`` (sid -> eio_sid of the sockets in ``room``,
    or in any of a list of rooms), as a dict copied from its room index rather than a
    generator: a delivery may yield (``chunk_size``) while rooms change."""
    if hasattr(room, "__len__") and not isinstance(room, str):
        if not room:
            return {}
        first = rooms.get(room[0])
        participants: dict[str, str] = first._fwdm.copy() if first is not None else {}
        for other in room[1:]:
            members = rooms.get(other)
            if members is not None:
                participants.update(members._fwdm)
        return participants
    members = rooms.get(room)
    return members._fwdm.copy() if members is not None else {}


def websocket_text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        return _SHORT_HEADERS[length] + payload
    if length <= 0xFFFF:
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
        self._batches: defaultdict[tornado.iostream.IOStream, list[bytes]] = defaultdict(list)
        self._batched_frames = 0
        self._flush_scheduled = False

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
        rooms = self.rooms.get(namespace)
        if rooms is None:
            return
        frame = self._frame(event, data, namespace) if self.fast_fanout and not callback else None
        if frame is None:  # off, an acknowledgement callback, or binary attachments
            await super().deliver(event, data, namespace, room, skip_sid, callback, **kwargs)
            return
        encoded, frame_bytes = frame
        message = None  # the Engine.IO packet, built for the first socket that needs it
        participants = _participants(rooms, room)
        if skip_sid is not None:
            for sid in skip_sid if isinstance(skip_sid, list) else (skip_sid,):
                participants.pop(sid, None)
        slow: list[asyncio.Task[None]] = []
        normal = 0
        # A socket whose last ping is older than this is past its ping timeout.
        stale = time.time() - self.server.eio.ping_timeout
        targets = self._targets
        if not self._flush_scheduled:  # before any packet this pass queues: see _flush
            self._schedule_flush()
        batches = self._batches
        batched = start = self._batched_frames  # frames waiting for this pass's flush
        chunk_size = self.chunk_size
        fast = 0
        # This loop is what a delivery costs, so it is written out inline. A socket's
        # stream is found once (``_resolve``) and remembered; each emit then checks
        # only what can change: the session or its WebSocket closing (forget it), a
        # packet in its queue or a late ping (this packet goes through the queue).
        for eio_sid in participants.values():
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
                    batches[stream].append(frame_bytes)
                    batched += 1
                    if batched >= chunk_size:
                        fast += batched - start
                        self._batched_frames = batched
                        await asyncio.sleep(0)  # the batches so far are written meanwhile
                        if not self._flush_scheduled:
                            self._schedule_flush()
                        batches = self._batches
                        batched = start = self._batched_frames
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
            if message is None:
                message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
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
        self._batched_frames = batched
        self.delivered_fast += fast + batched - start
        self.delivered_normal += normal + len(slow)
        if slow:
            await asyncio.wait(slow)

    def _frame(self, event: str, data: Any, namespace: str) -> tuple[str, bytes] | None:
        """The Socket.IO packet (encoded) and its WebSocket frame (the Engine.IO packet
        it travels in), or None for binary payloads."""
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        if args and type(args[-1]) is PositionMeta:
            # The recorded message's {"position"}: the same JSON as a plain dict, which the
            # C encoder writes without calling the subclass's ``items``.
            args[-1] = dict(args[-1])
        packet_class = self.server.packet_class
        if (
            packet_class.json is not jsonutil
            or packet_class.encode is not _STOCK_ENCODE
            or packet_class.__init__ is not _STOCK_INIT
        ):
            # Another JSON module or packet class: theirs encodes.
            packet = packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args])
            encoded = packet.encode()
            if not isinstance(encoded, str):  # binary attachments travel as several packets
                return None
        else:
            # What python-socketio's Packet.encode writes for an EVENT without id, with
            # the app's JSON (jsonutil.dumps with its separators), by one prebuilt
            # encoder. Bytes anywhere make the encoder's ``default`` raise: such a
            # payload has binary attachments and takes python-socketio's path (which
            # raises the same TypeError for a payload that is not JSON at all).
            try:
                body = _encode([event, *args])
            except TypeError:
                return None
            if namespace is None or namespace == "/":
                encoded = "2" + body
            else:
                encoded = "2" + namespace + "," + body
        return encoded, websocket_text_frame(("4" + encoded).encode())

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

    def _schedule_flush(self) -> None:
        """Run ``_flush`` at the end of this pass. An emit calls it before it batches or
        queues anything: whatever a packet queued later in the pass wakes (engine.io's
        writer task) then runs after the flush, so a socket's batched frames go out
        before any packet queued behind them."""
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write every socket's batch: one system call per socket when its buffer is empty."""
        batches, self._batches, self._batched_frames = self._batches, defaultdict(list), 0
        self._flush_scheduled = False
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
