"""The engine.io, python-socketio and Tornado parts the fast path replaces or reads.

- ``EngineIOServer``: engine.io's server with the lighter per-socket outgoing
  queue (``accel/queues.py``), a WebSocket wrapper that tells the fan-out which
  WebSocket engine.io bound a socket to, one timer for every socket's next PING
  (``accel/pinger.py``) and the Tornado driver's environ built for less
  (``accel/environ.py``).
- ``BoundWebSocket``, that wrapper, also serves the session in one task rather than
  three (``accel/websocket.py``), waits for a message on one future of the handler's
  ``Inbox`` rather than a chain of coroutines, and gives the Tornado stream of an
  open WebSocket lighter write-side queues (``accel/streams.py``).
- ``ServerMixin``: makes python-socketio build that engine.io server, and closes
  transports at shutdown through engine.io's socket internals.
- ``HandlerMixin``: the Tornado handler's incoming queue, and its WebSocket protocol
  read from callbacks (``accel/frames.py``); ``BoundWebSocket`` lets the request's
  spent HTTP state go once engine.io serves the session (``accel/upgraded.py``).

Why the binding is recorded here: a socket that starts on long-polling moves to a
WebSocket that names it with ``?sid=``, and anyone who knows the sid can open
such a WebSocket. engine.io accepts it as the socket's transport only after the
upgrade handshake (the ``2probe`` PING, then the UPGRADE packet) on a socket not
upgraded yet. The wrapper counts those two messages: only a WebSocket that got
past both, on a socket engine.io then marks upgraded, is recorded, and the first
recorded one is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import engineio
import tornado.websocket
from engineio import async_socket
from engineio.async_drivers import tornado as tornado_driver

from . import environ as accel_environ
from . import frames, upgraded, websocket
from .pinger import Pinger
from .queues import Inbox, PacketQueue
from .streams import lighten

# engine.io's per-socket ping task (AsyncSocket.schedule_ping starts it), which the
# server hands to its Pinger instead.
_SEND_PING = async_socket.AsyncSocket._send_ping
# engine.io's WebSocket session, which BoundWebSocket serves with accel/websocket.py.
_WEBSOCKET_HANDLER = async_socket.AsyncSocket._websocket_handler

# The upgrade handshake's messages on a WebSocket, before engine.io binds it.
UPGRADE_MESSAGES = 2


class BoundWebSocket(tornado_driver.WebSocket):
    """engine.io's Tornado WebSocket wrapper, which records a completed upgrade."""

    # Messages to receive before the upgrade is complete; None: not an upgrade, or done.
    upgrade_messages: int | None = None

    async def __call__(self, environ: dict[str, Any]) -> None:
        if self.handler.__self__.connected:  # a socket opened by long-polling
            self.upgrade_messages = UPGRADE_MESSAGES
        handler = environ["tornado.handler"]
        lighten(getattr(getattr(handler, "ws_connection", None), "stream", None))
        socket = self.handler.__self__
        if getattr(self.handler, "__func__", None) is _WEBSOCKET_HANDLER:
            # engine.io's WebSocket.__call__, serving the session in one task.
            self.tornado_handler = handler
            self.environ = environ
            upgraded.release(handler)  # the environ has what engine.io reads of it
            await websocket.serve(socket, self)
            return
        await super().__call__(environ)

    def wait(self) -> Awaitable[Any]:
        """The next message (str or bytes; OSError once closed), as engine.io's wrapper
        returns it, but as one future of the handler's ``Inbox`` where it has one."""
        if self.upgrade_messages is not None:
            self._count_upgrade_message()
        queue = getattr(self.tornado_handler, "receive_queue", None)
        if isinstance(queue, Inbox):
            return queue.next_message()
        return super().wait()

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
        self._async: dict[str, Any] = {
            **self._async,
            "websocket": BoundWebSocket,
            "translate_request": accel_environ.translate_request,
        }
        self.pinger = Pinger(self)

    def create_queue(self, *args: Any, **kwargs: Any) -> PacketQueue:
        return PacketQueue()  # a socket's outgoing queue, lighter than asyncio.Queue

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        """engine.io's, but a socket's next PING waits in the shared ``Pinger`` rather
        than in a task of its own (engine.io ignores what this returns for it)."""
        if getattr(target, "__func__", None) is _SEND_PING and not args and not kwargs:
            self.pinger.schedule(target.__self__)
            return None
        return super().start_background_task(target, *args, **kwargs)


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
        self.eio.pinger.close()  # every socket is closed: no PING is due any more


class HandlerMixin:
    """For engine.io's Tornado handler class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_queue = Inbox()  # lighter than the asyncio.Queue engine.io made

    def get_websocket_protocol(self) -> Any:
        """Tornado's protocol for an open WebSocket, read from callbacks rather than from
        the handler's task (``accel/frames.py``) when it is not compressed."""
        protocol = super().get_websocket_protocol()  # type: ignore[misc]
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            return frames.light_protocol(self, protocol.params) or protocol
        return protocol
