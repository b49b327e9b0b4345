"""The Socket.IO server, wired the way python-socketio's Tornado example does it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import socketio
import tornado.httputil
import tornado.websocket

from .. import jsonutil, logs
from ..auth.nonces import SocketTokenStore
from ..config import Settings
from ..metrics import Metrics
from ..web.errors import NoServerHeader
from . import accel
from .handshake import Handshake, client_address
from .history import History, LocalHistory
from .inbound import ClientPacket
from .outflow import Flow, Outflow
from .positions import PositionCodec
from .presence import LocalPresence, Presence
from .recovery import Recovery
from .rooms import NAMESPACE, RoomManager
from .transport import EngineIOLog, close_session, guarded

__all__ = ["socketio_route"]

log = logging.getLogger(__name__)

SOCKETIO_PATH = r"/socket.io/"


def allowed_origins(settings: Settings) -> Any:
    """The ``cors_allowed_origins`` value for CORS_ALLOWED_ORIGINS.

    Unset: same origin only. A list: those origins and the same origin (so the
    demo page keeps working). ``*``: any origin.

    The same origin is the scheme and host of the request as the app reads them
    (``same_origin``), for both transports: never engine.io's own default, whose
    Tornado driver takes the scheme from X-Forwarded-Proto and the host from
    X-Forwarded-Host as the client sent them, whatever TRUSTED_PROXY_HOPS says.
    """
    if "*" in settings.cors_allowed_origins:
        return "*"
    extra = frozenset(settings.cors_allowed_origins)

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        handler = environ.get("tornado.handler")
        return origin in extra or (handler is not None and origin == same_origin(handler.request))

    return check


def same_origin(request: tornado.httputil.HTTPServerRequest) -> str:
    """The request's own origin: its scheme (the nearest proxy's X-Forwarded-Proto with
    TRUSTED_PROXY_HOPS, web/application.py) and its Host."""
    return f"{request.protocol}://{request.host}"


class SocketServer(socketio.AsyncServer):
    """python-socketio's server, with transports that end at shutdown and with their
    session, and stay bound to the address that opened their session. (With
    FAST_FANOUT, ``realtime/accel/`` builds a subclass of it.)"""

    handshake: Handshake  # set by create_socket_server
    fast: accel.Accel | None = None  # set by create_socket_server
    history: History | None = None  # set by create_socket_server (None: recovery off)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_websockets: set[tornado.websocket.WebSocketHandler] = set()
        # The WebSockets that name an engine.io session in their URL (its upgrade, and
        # any attempt at one from the same address), by session: closed with it.
        self.upgrades: dict[str, list[tornado.websocket.WebSocketHandler]] = {}
        self._ending: set[asyncio.Task[None]] = set()
        self._cutting_off: set[asyncio.Future[None]] = set()
        self.outflow = Outflow()  # what recovering sockets' transports have taken

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """python-socketio's server-side disconnect (logout, JWT expiry, disconnectUsers),
        which ends the socket's engine.io session too.

        python-socketio sends the DISCONNECT packet and runs the disconnect handler, but
        keeps the engine.io session, which would answer pings, signed in to nothing,
        for as long as the client keeps it; socket.io-client closes it, a hostile or
        broken client need not. The session gets engine.io's CLOSE packet after the
        DISCONNECT, and its WebSocket, if any, is closed."""
        namespace = namespace or NAMESPACE
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        local = eio_sid is not None and self.manager.is_connected(sid, namespace)
        opener = self.opening_request(eio_sid) if local else None
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is None or not local or self._joined_elsewhere(eio_sid):
            return
        ending = asyncio.ensure_future(self._end_session(eio_sid, opener))
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    def _joined_elsewhere(self, eio_sid: str) -> bool:
        """Whether the engine.io session is still connected to some namespace."""
        return any(
            self.manager.sid_from_eio_sid(eio_sid, namespace) is not None
            for namespace in self.manager.get_namespaces()
        )

    async def _end_session(self, eio_sid: str, opener: Any) -> None:
        within = self.eio.ping_interval + self.eio.ping_timeout
        await close_session(self, eio_sid, within)  # the CLOSE packet, taken by the writer
        for handler in [opener, *self.upgrades.get(eio_sid, ())]:
            if isinstance(handler, tornado.websocket.WebSocketHandler):
                handler.close()  # a WebSocket serving the session; no-op for an HTTP request

    def upgrade_opened(self, eio_sid: str, handler: tornado.websocket.WebSocketHandler) -> None:
        self.upgrades.setdefault(eio_sid, []).append(handler)

    def upgrade_closed(self, eio_sid: str, handler: tornado.websocket.WebSocketHandler) -> None:
        handlers = self.upgrades.get(eio_sid, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self.upgrades.pop(eio_sid, None)

    def websocket_opened(self, handler: tornado.websocket.WebSocketHandler) -> None:
        self.open_websockets.add(handler)

    def websocket_closed(self, handler: tornado.websocket.WebSocketHandler) -> None:
        self.open_websockets.discard(handler)

    async def close_transports(self) -> None:
        """Close every WebSocket with a close frame, as a process exit would; engine.io
        then runs the socket's disconnect handlers. Long-polling requests end with the
        HTTP connections (server.py closes them after ``app.stop``)."""
        for handler in list(self.open_websockets):
            handler.close()

    def watch_outflow(self, sid: str) -> tuple[str, Flow] | None:
        """Count what the transport of socket ``sid`` takes from now on (a replay's flow
        control); its engine.io sid and its ``Flow``, or None if it is gone."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        environ = self.get_environ(sid)
        if eio_sid is None or environ is None:
            return None
        flow = self.outflow.watch(eio_sid)
        # The request that opened the session: its transport if it was a WebSocket (an
        # upgrading WebSocket names its session in its query instead).
        environ["tornado.handler"].outflow_session = eio_sid
        return eio_sid, flow

    def cut_off(self, sid: str) -> None:
        """Drop the transport of socket ``sid`` as a network failure would (its client
        reconnects and recovers from the last position it received): close the
        WebSockets engine.io wrote to for it, or, on long-polling, end its session."""
        eio_sid = self.manager.eio_sid_from_sid(sid, NAMESPACE)
        flow = self.outflow.get(eio_sid)
        if eio_sid is None:
            return
        if flow is not None and flow.websockets:
            for handler in list(flow.websockets):
                handler.close()
            return
        within = self.eio.ping_interval + self.eio.ping_timeout
        task = asyncio.ensure_future(close_session(self, eio_sid, within))
        self._cutting_off.add(task)
        task.add_done_callback(self._cutting_off.discard)

    def opened_from(self, eio_sid: str) -> str | None:
        """The address whose request opened engine.io session ``eio_sid`` (None: no such
        session). python-socketio keeps each session's opening environ (its
        ``get_environ``); engine.io's Tornado driver puts the request's handler in it."""
        environ = self.environ.get(eio_sid)
        return None if environ is None else client_address(environ)

    def opening_request(self, eio_sid: str) -> Any:
        """The Tornado handler of the request that opened session ``eio_sid`` (None: no
        such session); it lives as long as the session."""
        environ = self.environ.get(eio_sid)
        return None if environ is None else environ.get("tornado.handler")


def create_socket_server(
    settings: Settings, nonces: SocketTokenStore, metrics: Metrics
) -> SocketServer:
    """The Socket.IO server: stock python-socketio classes, or the fast path's subclasses
    of them when FAST_FANOUT is on and the library versions are the tested ones."""
    manager_class: type[RoomManager] = RoomManager
    if settings.redis_url is not None:
        from .redis_queue import RedisRoomManager  # the redis extra

        manager_class = RedisRoomManager
    server_class: type[SocketServer] = SocketServer
    fast = accel.load(settings.fast_fanout)
    if fast is not None:
        manager_class = cast(type[RoomManager], fast.manager_class(manager_class))
        server_class = fast.server_class(server_class)
    manager = (
        manager_class()
        if settings.redis_url is None
        else manager_class(settings.redis_url, channel=settings.redis_channel)
    )
    metrics.watch_deliveries(manager)
    sio = server_class(
        # Name the mode: with aiohttp installed python-socketio would pick aiohttp.
        async_mode="tornado",
        client_manager=manager,
        json=jsonutil,
        cors_allowed_origins=allowed_origins(settings),
        cors_credentials=False,  # nothing rides on a cookie (the engine's SECURITY.md)
        ping_interval=settings.socketio_ping_interval,
        ping_timeout=settings.socketio_ping_timeout,
        max_http_buffer_size=settings.socketio_max_message_bytes,
        transports=list(settings.socketio_transports),
        serializer=ClientPacket,
        logger=False,
        engineio_logger=EngineIOLog(),
    )
    if fast is not None:
        fast.bind(sio)
    sio.fast = fast
    presence = create_presence(settings)
    sio.history = message_history(settings, sio) if settings.recovery_enabled else None
    recovery = Recovery(sio, sio.history, settings) if sio.history is not None else None
    handshake = sio.handshake = Handshake(sio, nonces, settings, metrics, presence, recovery)
    sio.on("connect", handshake.connect)
    sio.on("disconnect", handshake.disconnect)
    return sio


def create_presence(settings: Settings) -> Presence:
    """Socket counts in memory, or shared through Redis when REDIS_URL is set."""
    if settings.redis_url is None:
        return LocalPresence()
    from .redis_presence import RedisPresence  # the redis extra

    return RedisPresence(
        settings.redis_url, settings.redis_channel, settings.presence_heartbeat_seconds
    )


def message_history(settings: Settings, sio: socketio.AsyncServer) -> History:
    """Where the message client's emits are kept for recovery: this process's memory, or
    with REDIS_URL a Redis stream, which also carries them to the other processes."""
    if settings.redis_url is None:
        return LocalHistory(
            sio,
            settings.recovery_retention_seconds,
            settings.recovery_max_messages,
            position_codec(settings),
        )
    from .redis_history import RedisHistory  # the redis extra

    return RedisHistory(
        sio,
        settings.redis_url,
        settings.redis_channel,
        settings.recovery_retention_seconds,
        settings.recovery_max_messages,
        position_codec(settings),
        settings.recoveries_per_minute_per_user,
    )


def position_codec(settings: Settings) -> PositionCodec:
    """Positions enciphered under JWT_SECRET (and, during a rotation, readable under
    JWT_PREVIOUS_SECRET), the same in every process."""
    return PositionCodec(settings.jwt_secret, settings.jwt_previous_secret)


def _forget_failure(written: asyncio.Future[None]) -> None:
    if not written.cancelled():
        written.exception()


def socketio_route(sio: SocketServer) -> tuple[str, type]:
    """The Tornado route for ``/socket.io/``: engine.io's handler (the fast path's
    subclass of it when on), whose WebSockets close when engine.io is done with them,
    behind the transport limits of ``transport.guarded``."""
    engineio_handler = socketio.get_tornado_handler(sio)
    if sio.fast is not None:
        engineio_handler = sio.fast.handler_class(engineio_handler)

    class EngineIOTransport(engineio_handler):  # type: ignore[misc, valid-type]
        session_id: str | None  # the session the URL names, as read by transport.guarded
        # The engine.io session whose packets this handler writes, once a replay watches
        # it (realtime/outflow.py): set by ``watch_outflow`` for a session opened on a
        # WebSocket, else read from the query (``session_id``, transport.guarded).
        outflow_session: str | None = None

        async def open(self, *args: Any, **kwargs: Any) -> None:
            # What engine.io's handler does (serve the session in a task of its own), plus:
            # when that task ends, the WebSocket closes. engine.io leaves one it refused
            # (an unknown sid, a session already upgraded) open, its error unretrieved.
            sio.websocket_opened(self)
            if self.session_id is not None:
                sio.upgrade_opened(self.session_id, self)
            session = asyncio.ensure_future(sio.eio.handle_request(self))
            session.add_done_callback(self.session_ended)

        def session_ended(self, session: asyncio.Future[Any]) -> None:
            if not session.cancelled() and session.exception() is not None:
                log.info(
                    "socket.io WebSocket closed: engine.io refused it (%s)",
                    type(session.exception()).__name__,
                )
            self.close()

        def on_close(self) -> None:
            sio.websocket_closed(self)
            if self.session_id is not None:
                sio.upgrade_closed(self.session_id, self)
            super().on_close()

        def write_message(self, message: Any, binary: bool = False) -> asyncio.Future[None]:
            # engine.io drops the future Tornado returns; a write that a closing connection
            # cuts short would fail it unretrieved ("Task exception was never retrieved",
            # logged as an ERROR for every client that leaves mid-delivery). The socket's
            # close is handled by engine.io already: retrieve and forget.
            written = super().write_message(message, binary=binary)
            written.add_done_callback(_forget_failure)
            if sio.outflow:  # a replay is under way: is it this session's?
                if self.outflow_session is None:
                    self.outflow_session = self.session_id or ""
                flow = sio.outflow.get(self.outflow_session)
                if flow is not None:
                    flow.websockets.add(self)
                    written.add_done_callback(flow.took_one)
            return written

        def write(self, chunk: Any) -> None:
            if sio.outflow and self.request.method == "GET" and self.get_status() == 200:
                sio.outflow.polled(self.session_id)  # a long-polling answer
            super().write(chunk)

    class SocketIOHandler(NoServerHeader, guarded(EngineIOTransport)):  # type: ignore[misc]
        def initialize(self) -> None:
            self.request_id = logs.start_request(self.request)

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
            # connection hanging: apply the one rule of allowed_origins(), which engine.io
            # applies to long-polling (and, after this, to the upgrade) as well.
            allowed = sio.eio.cors_allowed_origins
            if allowed == "*":
                return True
            return bool(allowed(origin, {"tornado.handler": self}))

    return (SOCKETIO_PATH, SocketIOHandler)
