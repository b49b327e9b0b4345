"""The Socket.IO server, wired the way python-socketio's Tornado example does it."""

from __future__ import annotations

import logging
from typing import Any

import engineio
import socketio

from .. import jsonutil, logs
from ..auth.nonces import SocketTokenStore
from ..config import Settings
from ..metrics import Metrics
from .handshake import Handshake
from .inbound import ClientPacket
from .queues import Inbox, PacketQueue
{%- if cookiecutter.message_queue == "redis" %}
from .redis_queue import RedisRoomManager
{%- else %}
from .rooms import RoomManager
{%- endif %}
from .transport import EngineIOLog, guarded

log = logging.getLogger(__name__)

SOCKETIO_PATH = r"/socket.io/"


def allowed_origins(settings: Settings) -> Any:
    """The ``cors_allowed_origins`` value for CORS_ALLOWED_ORIGINS.

    Unset: same origin only. A list: those origins and the same origin (so the
    demo page keeps working). ``*``: any origin.
    """
    if not settings.cors_allowed_origins:
        return None
    if "*" in settings.cors_allowed_origins:
        return "*"
    extra = set(settings.cors_allowed_origins)

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin in extra:
            return True
        same = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == same

    return check


class _EngineIOServer(engineio.AsyncServer):
    def create_queue(self, *args: Any, **kwargs: Any) -> PacketQueue:
        return PacketQueue()  # a socket's outgoing queue, lighter than asyncio.Queue


class SocketServer(socketio.AsyncServer):
    """python-socketio's server on an engine.io server with lighter per-socket queues."""

    handshake: Handshake  # set by create_socket_server

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return _EngineIOServer


def create_socket_server(
    settings: Settings, nonces: SocketTokenStore, metrics: Metrics
) -> socketio.AsyncServer:
{%- if cookiecutter.message_queue == "redis" %}
    manager = RedisRoomManager(settings.redis_url, channel=settings.redis_channel)
{%- else %}
    manager = RoomManager()
{%- endif %}
    manager.fast_fanout = settings.fast_fanout
    metrics.watch_deliveries(manager)
    sio = SocketServer(
        # Name the mode: with aiohttp installed python-socketio would pick aiohttp.
        async_mode="tornado",
        client_manager=manager,
        json=jsonutil,
        cors_allowed_origins=allowed_origins(settings),
        ping_interval=settings.socketio_ping_interval,
        ping_timeout=settings.socketio_ping_timeout,
        max_http_buffer_size=settings.socketio_max_message_bytes,
        transports=list(settings.socketio_transports),
        serializer=ClientPacket,
        logger=False,
        engineio_logger=EngineIOLog(),
    )
    handshake = sio.handshake = Handshake(sio, nonces, settings, metrics)
    sio.on("connect", handshake.connect)
    sio.on("disconnect", handshake.disconnect)
    return sio


def socketio_route(sio: socketio.AsyncServer) -> tuple[str, type]:
    """The Tornado route for ``/socket.io/``."""
    engineio_handler = guarded(socketio.get_tornado_handler(sio))
    manager = sio.manager

    class SocketIOHandler(engineio_handler):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.receive_queue = Inbox()  # lighter than the asyncio.Queue engine.io made

        def initialize(self) -> None:
            self.request_id = logs.start_request(self.request)
            self.upgrading_sid: str | None = None

        async def open(self, *args: Any, **kwargs: Any) -> None:
            # A socket upgrading from long-polling: remember its WebSocket handler, which
            # the fast fan-out path writes to (a new socket's is in its environ).
            self.upgrading_sid = self.get_query_argument("sid", None)
            if self.upgrading_sid:
                manager.websocket_handlers[self.upgrading_sid] = self
            await super().open(*args, **kwargs)

        def on_close(self) -> None:
            if self.upgrading_sid:
                manager.websocket_handlers.pop(self.upgrading_sid, None)
            super().on_close()

        def get_compression_options(self) -> None:
            # engine.io's handler negotiates permessage-deflate for every socket; it
            # costs CPU on every frame and ~150 KB of zlib state per connection, for
            # messages that are mostly small. Node's socket.io has it off too.
            return None

        def check_xsrf_cookie(self) -> None:
            # Socket.IO authenticates with its one-time token, and long-polling POSTs
            # carry no XSRF token: keep xsrf_cookies=True elsewhere from breaking it.
            return None

        def check_origin(self, origin: str) -> bool:
            # Tornado asks this before a WebSocket upgrade from another origin (the same
            # origin is accepted before it asks), and answers 403 on False. engine.io's
            # version fails on the callable of allowed_origins() (a 500) and, when
            # CORS_ALLOWED_ORIGINS is unset, accepts any origin only to leave the upgraded
            # connection hanging: apply the rule long-polling follows instead.
            allowed = sio.eio.cors_allowed_origins
            if allowed == "*":
                return True
            if callable(allowed):
                environ = {"wsgi.url_scheme": self.request.protocol, "HTTP_HOST": self.request.host}
                return bool(allowed(origin, environ))
            return False

    return (SOCKETIO_PATH, SocketIOHandler)
