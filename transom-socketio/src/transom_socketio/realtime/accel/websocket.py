"""engine.io's WebSocket session (``AsyncSocket._websocket_handler``) in one task.

engine.io serves a socket on its WebSocket with three tasks: the request's own,
which reads, a writer task, and for every message a task that waits for it
(``websocket_wait``), each wait bounded by ``asyncio.wait_for`` (a waiter future, a
timer handle and a callback), the writer's too. An idle socket thus holds two extra
tasks with their contexts, four coroutine frames, two timers and their futures:
about 2.5 KB per socket.

``serve`` does the same job in the request's task: it reads there, awaiting the
handler's ``Inbox`` future directly; the writer is a callback on the outgoing
queue's future (``PacketQueue.get``), which writes what ``AsyncSocket.poll`` would
have returned, in the same order, in the same event-loop callback, as the writer
task did after waking; and one timer per socket (``_Deadline``) bounds both waits
as ``wait_for`` did: the reader gives up when nothing has come from the client for
ping interval + ping timeout, the writer when nothing was queued for it for as long.

Everything else is engine.io's, in its order: the upgrade handshake (the probe
PING, its PONG, the NOOP that ends the poll, the UPGRADE), every packet through
``socket.receive``, the writer stopping on a None (or an error) and closing the
WebSocket, and once the reader is done, the writer unlocked and awaited and the
socket closed with ``TRANSPORT_CLOSE``. ``accel/engine.py`` runs it in place of
``_websocket_handler`` for the sockets of the engine.io server it builds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.websocket
from engineio import exceptions, packet


class _PacketTooLarge(ValueError):
    """What engine.io's ``websocket_wait`` raises for a message over the limit."""


class _Session:
    """The writer and the timeouts of one socket served by ``serve``."""

    __slots__ = (
        "done",
        "getter",
        "read_since",
        "reading",
        "socket",
        "timer",
        "write_since",
        "writing",
        "ws",
    )

    def __init__(self, socket: Any, ws: Any) -> None:
        self.socket = socket
        self.ws = ws
        self.writing = True  # the writer has not stopped
        self.getter: asyncio.Future[Any] | None = None  # the writer's wait on the queue
        self.reading: asyncio.Future[Any] | None = None  # the reader's wait on a message
        self.done: asyncio.Future[None] | None = None  # the reader waits for the writer
        loop = asyncio.get_running_loop()
        self.read_since = self.write_since = loop.time()
        self.timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the timeouts

    @property
    def timeout(self) -> float:
        server = self.socket.server
        return float(server.ping_interval + server.ping_timeout)

    def arm(self) -> None:
        """The timer for the earlier of the two waits' ends (the writer's, the reader's)."""
        if self.timer is not None:
            return
        since = min(self.read_since, self.write_since) if self.writing else self.read_since
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(since + self.timeout, self._expire)

    def _expire(self) -> None:
        self.timer = None
        now = asyncio.get_running_loop().time()
        timeout = self.timeout
        if self.writing and now >= self.write_since + timeout:
            # What poll's wait_for timing out does: QueueEmpty, and the writer stops.
            self.stop_writing()
        reading = self.reading
        if reading is not None and not reading.done() and now >= self.read_since + timeout:
            reading.set_exception(TimeoutError())  # the reader's wait_for timing out
            return
        if self.writing or (reading is not None and not reading.done()):
            self.arm()

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ------------------------------------------------------------------ the writer

    def wait_for_packets(self) -> None:
        """Wait for the next packet (``poll``'s first ``queue.get()``)."""
        self.write_since = asyncio.get_running_loop().time()
        getter = self.getter = self.socket.queue.get()
        if getter.done():
            self._packets_ready(getter)
        else:
            getter.add_done_callback(self._packets_ready)

    def _packets_ready(self, getter: asyncio.Future[Any]) -> None:
        if getter is not self.getter or not self.writing or getter.cancelled():
            return
        self.getter = None
        queue = self.socket.queue
        queue.task_done()
        packets = [getter.result()]
        # What AsyncSocket.poll does with the first packet and those behind it.
        if packets == [None]:
            packets = []
        else:
            while True:
                try:
                    pkt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                queue.task_done()
                if pkt is None:
                    queue.put_nowait(None)
                    break
                packets.append(pkt)
        if not packets:  # the connection is ending
            self.stop_writing()
            return
        try:
            for pkt in packets:
                self._send(pkt.encode())
        except Exception:
            self.stop_writing()
            return
        self.wait_for_packets()

    def _send(self, message: str | bytes) -> None:
        # engine.io's Tornado WebSocket.send, which never waits.
        try:
            self.ws.tornado_handler.write_message(message, binary=isinstance(message, bytes))
        except tornado.websocket.WebSocketClosedError:
            raise exceptions.EngineIOError() from None

    def stop_writing(self) -> None:
        """The writer's end: stop waiting, then close the WebSocket (``ws.close``)."""
        if not self.writing:
            return
        self.writing = False
        getter, self.getter = self.getter, None
        if getter is not None and not getter.done():
            getter.cancel()  # a packet put from now on stays in the queue, as in engine.io
        self.ws.tornado_handler.close()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    # ------------------------------------------------------------------ the reader

    async def read(self) -> Any:
        """The next message (``websocket_wait``), bounded by the timeout."""
        self.read_since = asyncio.get_running_loop().time()
        self.arm()
        reading = self.reading = _as_future(self.ws.wait())
        try:
            data = await reading
        finally:
            self.reading = None
        if data and len(data) > self.socket.server.max_http_buffer_size:
            raise _PacketTooLarge("packet is too large")
        return data

    async def writer_stopped(self) -> None:
        """``await asyncio.wait_for(writer_task, timeout=None)``."""
        if self.writing:
            self.done = asyncio.get_running_loop().create_future()
            await self.done


def _as_future(awaitable: Any) -> asyncio.Future[Any]:
    if isinstance(awaitable, asyncio.Future):
        return awaitable
    return asyncio.ensure_future(awaitable)


async def _wait_unbounded(socket: Any, ws: Any) -> Any:
    """engine.io's ``websocket_wait`` without a timeout (the upgrade handshake's)."""
    data = await ws.wait()
    if data and len(data) > socket.server.max_http_buffer_size:
        raise _PacketTooLarge("packet is too large")
    return data


async def serve(socket: Any, ws: Any) -> None:
    """``AsyncSocket._websocket_handler(ws)`` for ``socket``, with one task."""
    server = socket.server
    if socket.connected:
        # the socket was already connected, so this is an upgrade
        socket.upgrading = True  # hold packet sends during the upgrade
        try:
            pkt = await _wait_unbounded(socket, ws)
        except OSError:
            return
        decoded_pkt = packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != packet.PING or decoded_pkt.data != "probe":
            server.logger.info("%s: Failed websocket upgrade, no PING packet", socket.sid)
            socket.upgrading = False
            return
        await ws.send(packet.Packet(packet.PONG, data="probe").encode())
        await socket.queue.put(packet.Packet(packet.NOOP))  # end poll
        try:
            pkt = await _wait_unbounded(socket, ws)
        except OSError:
            socket.upgrading = False
            return
        decoded_pkt = packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != packet.UPGRADE:
            socket.upgraded = False
            server.logger.info(
                "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                socket.sid,
                pkt,
            )
            socket.upgrading = False
            return
        socket.upgraded = True
        socket.upgrading = False
    else:
        socket.connected = True
        socket.upgraded = True

    session = _Session(socket, ws)
    session.wait_for_packets()  # the writer
    server.logger.info("%s: Upgrade to websocket successful", socket.sid)
    try:
        while True:
            try:
                p = await session.read()
            except BaseException:
                break
            if p is None:
                break  # connection closed by client
            pkt = packet.Packet(encoded_packet=p)
            try:
                await socket.receive(pkt)
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                server.logger.info("Receive error -- socket is closed")
                break
            except BaseException:
                # if we get an unexpected exception we log the error and exit
                # the connection properly
                server.logger.exception("Unknown receive error")
        await socket.queue.put(None)  # unlock the writer so it can exit
        await session.writer_stopped()
    finally:
        session.cancel_timer()
    await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
