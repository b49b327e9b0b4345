"""The engine.io, python-socketio and Tornado parts the fast path replaces or reads.

- ``EngineIOServer``: engine.io's server with the lighter per-socket outgoing
  queue (``accel/queues.py``) and a WebSocket wrapper that tells the fan-out which
  WebSocket engine.io bound a socket to.
- ``ServerMixin``: makes python-socketio build that engine.io server, and closes
  transports at shutdown through engine.io's socket internals.
- ``HandlerMixin``: the Tornado handler's incoming queue, and forgetting a closed
  upgraded WebSocket.

Why the binding is recorded here: a socket that starts on long-polling moves to a
WebSocket that names it with ``?sid=``, and anyone who knows the sid can open
such a WebSocket. engine.io accepts it as the socket's transport only after the
upgrade handshake (the ``2probe`` PING, then the UPGRADE packet) on a socket not
upgraded yet. The wrapper counts those two messages: only a WebSocket that got
past both, on a socket engine.io then marks upgraded, is recorded, and the first
recorded one is kept.
"""

from __future__ import annotations

from typing import Any

import engineio
from engineio.async_drivers import tornado as tornado_driver

from .queues import Inbox, PacketQueue

# The upgrade handshake's messages on a WebSocket, before engine.io binds it.
UPGRADE_MESSAGES = 2


class BoundWebSocket(tornado_driver.WebSocket):
    """engine.io's Tornado WebSocket wrapper, which records a completed upgrade."""

    # Messages to receive before the upgrade is complete; None: not an upgrade, or done.
    upgrade_messages: int | None = None

    async def __call__(self, environ: dict[str, Any]) -> None:
        if self.handler.__self__.connected:  # a socket opened by long-polling
            self.upgrade_messages = UPGRADE_MESSAGES
        await super().__call__(environ)

    async def wait(self) -> Any:
        if self.upgrade_messages is not None:
            self._count_upgrade_message()
        return await super().wait()

    def _count_upgrade_message(self) -> None:
        if self.upgrade_messages:
            self.upgrade_messages -= 1
            return
        # engine.io asks for a third message only after the probe and the UPGRADE.
        self.upgrade_messages = None
        socket = self.handler.__self__
        if socket.upgraded and not socket.closed:
            socket.server.websocket_handlers.setdefault(socket.sid, self.tornado_handler)


class EngineIOServer(engineio.AsyncServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The fan-out's map (ServerMixin.bind_fanout): sid -> upgraded WebSocket handler.
        self.websocket_handlers: dict[str, Any] = {}
        self._async: dict[str, Any] = {**self._async, "websocket": BoundWebSocket}

    def create_queue(self, *args: Any, **kwargs: Any) -> PacketQueue:
        return PacketQueue()  # a socket's outgoing queue, lighter than asyncio.Queue


class ServerMixin:
    """For a ``socketio.AsyncServer`` subclass."""

    eio: EngineIOServer
    manager: Any

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return EngineIOServer

    def bind_fanout(self) -> None:
        """Share the fan-out manager's map of upgraded WebSockets with engine.io."""
        self.eio.websocket_handlers = self.manager.websocket_handlers

    def websocket_opened(self, handler: Any) -> None:
        """Nothing to track: ``close_transports`` finds every socket in engine.io."""

    def websocket_closed(self, handler: Any) -> None:
        sid = handler.session_id  # the session it names, as engine.io read it (transport.py)
        if sid is not None and self.eio.websocket_handlers.get(sid) is handler:
            del self.eio.websocket_handlers[sid]
            self.manager.forget(sid)

    async def close_transports(self) -> None:
        """Run every socket's disconnect handlers without sending a CLOSE packet, then end
        its writer, which closes its WebSocket (long-polling requests end with the HTTP
        connections)."""
        for socket in list(self.eio.sockets.values()):
            await socket.close(wait=False, abort=True)
            await socket.queue.put(None)


class HandlerMixin:
    """For engine.io's Tornado handler class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_queue = Inbox()  # lighter than the asyncio.Queue engine.io made
