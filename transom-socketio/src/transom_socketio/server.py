"""Run an app: embedded database if needed, HTTP server, graceful shutdown.

``make_app`` is the app's factory (``settings -> Application``, its ``app.make_app``)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado import httputil

from . import app as application
from .config import AppSettings, ConfigError, Settings
from .embedded_db import IN_MEMORY, client_uri, start_embedded_database

log = logging.getLogger(__name__)

# An app's factory: its settings in, its (not yet started) application out.
MakeApp = Callable[[AppSettings], tornado.web.Application]

# Tornado's own ceiling on any request body; the API's limit (MAX_BODY_BYTES) is
# lower and answered with a JSON 413 by the handlers.
HARD_BODY_LIMIT = 16 * 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0
# The cyclic garbage collector's thresholds for a server (CPython's are 700, 10, 10).
# Each open socket keeps ~90 tracked objects alive, so with the defaults a storm of
# connections triggers a collection every few handshakes that rescans every socket
# opened before. With these, the youngest generation is collected every 50,000 net
# allocations (cycles freed late cost a few MB at most) and the oldest ~140 times less
# often. Reference counting still frees everything that is not in a cycle at once.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Freeze what start-up left alive and collect what comes after less often.

    Call once the app is started: the modules and the embedded database's state
    live as long as the process, so ``gc.freeze()`` keeps them out of every later
    collection, which then scans only what requests and sockets create.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def http_server(app: tornado.web.Application, settings: Settings) -> tornado.httpserver.HTTPServer:
    """The HTTP server of ``app``, with bounded waits for a request's parts.

    Tornado waits an hour by default for a request's headers (and for the next request
    on a kept-alive connection: one setting, ``idle_connection_timeout``) and another
    for its body, so a client that sends them slowly, or stops, holds a connection and
    its buffers that long. Requests being answered (a long-poll) and upgraded WebSockets
    are not bounded by these: they have their own limits (SECURITY.md)."""
    # No xheaders: the app applies its own client-address rule (web/application.py).
    return tornado.httpserver.HTTPServer(
        BodyTimeout(app, settings.http_body_timeout_seconds),
        max_body_size=HARD_BODY_LIMIT,
        idle_connection_timeout=settings.http_idle_timeout_seconds,
    )


class BodyTimeout(httputil.HTTPServerConnectionDelegate):
    """``app``, with ``seconds`` to receive the body of each request that has one.

    Tornado's own ``body_timeout`` bounds every request's body read with a task and a
    timer, also when there is nothing to read (a GET, a POST with ``Content-Length: 0``
    such as a socket-token request): ~3 % of the CPU of a connection's token and
    handshake (benchmarks/README.md). This sets the same bound, with Tornado's public
    ``set_body_timeout``, on the requests that announce a body only: a
    ``Transfer-Encoding``, or a ``Content-Length`` other than ``0``."""

    def __init__(self, app: tornado.web.Application, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = self.app.start_request(server_conn, request_conn)
        return _TimedBody(delegate, request_conn, self.seconds)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _TimedBody(httputil.HTTPMessageDelegate):
    """The app's delegate for one request; only ``headers_received`` passes through here
    (the other calls go straight to the app's, bound in ``__init__``)."""

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        connection: httputil.HTTPConnection,
        seconds: float,
    ) -> None:
        self._delegate = delegate
        self._connection = connection
        self._seconds = seconds
        self.data_received = delegate.data_received  # type: ignore[method-assign]
        self.finish = delegate.finish  # type: ignore[method-assign]
        self.on_connection_close = delegate.on_connection_close  # type: ignore[method-assign]

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if "Transfer-Encoding" in headers or headers.get("Content-Length", "0") != "0":
            self._connection.set_body_timeout(self._seconds)  # type: ignore[attr-defined]
        return self._delegate.headers_received(start_line, headers)


def listening_sockets(settings: Settings) -> list[socket.socket]:
    """The sockets HOST:PORT names, bound; ConfigError (one line) if they cannot be."""
    try:
        return tornado.netutil.bind_sockets(settings.port, settings.host)
    except OSError as error:  # in use, not an address of this machine, unknown name
        raise cannot_listen(settings, error) from None


def cannot_listen(settings: Settings, error: OSError) -> ConfigError:
    """The one line for a HOST:PORT that cannot be bound."""
    reason = error.strerror or error
    return ConfigError(f"HOST/PORT: cannot listen on {settings.host}:{settings.port} ({reason})")


def _loopback(host: str) -> bool:
    """Whether ``host`` (HOST) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_reachable(settings: Settings) -> None:
    """A WARNING when development (or test) may be reached from other machines: bound to
    an address they reach, or named by a PUBLIC_URL that is not this machine (a tunnel,
    ngrok and the like, whose requests arrive from 127.0.0.1 with that host)."""
    public_host = urlsplit(settings.public_url or "").hostname
    if not _loopback(settings.host):
        where = f"on {settings.host}, which other machines can reach"
    elif public_host is not None and not _loopback(public_host):
        where = f"with PUBLIC_URL on {public_host}, which others reach through it"
    else:
        return
    log.warning(
        "APP_ENV=%s %s: development serves every mail's links at /dev/mail and /metrics "
        "without a token to whoever reaches it; use APP_ENV=production there, or "
        "HOST=127.0.0.1 without a public PUBLIC_URL",
        settings.app_env,
        where,
    )


def run(
    settings: AppSettings,
    make_app: MakeApp[AppSettings],
    sockets: list[socket.socket] | None = None,
) -> None:
    """``serve`` on the event loop EVENT_LOOP names (uvloop where it is installed)."""
    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings, make_app, sockets))


def event_loop_factory(name: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``"uvloop"``; None (asyncio's default loop) otherwise.

    Tornado, the driver and Socket.IO all run on asyncio's interfaces, so either loop
    serves the same app; uvloop's, written in C, spends less CPU per callback, timer
    and socket event (``benchmarks/README.md``).
    """
    if name != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


async def serve(
    settings: AppSettings,
    make_app: MakeApp[AppSettings],
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop in order and return.

    ``sockets``: listening sockets bound beforehand (several worker processes share
    them); by default HOST:PORT is bound here.
    """
    embedded = None
    if settings.uses_embedded_db:
        storage = IN_MEMORY if settings.app_env == "test" else settings.data_dir / "db"
        embedded = start_embedded_database(storage)
        settings = settings.model_copy(update={"mongodb_uri": client_uri(embedded)})
    bound_here = sockets is None
    try:
        if sockets is None:
            sockets = listening_sockets(settings)
        port = sockets[0].getsockname()[1]
        # PORT=0 binds any free port: the app (the links of its mails) knows which.
        settings = settings.model_copy(update={"port": port})
        app = make_app(settings)
        await application.start(app)
        tune_garbage_collector()
        server = http_server(app, settings)
        server.add_sockets(sockets)
        log.info(
            "listening on http://%s:%d (APP_ENV=%s, event loop %s)",
            settings.host,
            port,
            settings.app_env,
            settings.event_loop,
        )
        if settings.app_env != "production":
            warn_if_reachable(settings)

        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()

        log.info("shutting down")
        server.stop()  # stop accepting
        await application.stop(app)  # sockets, Socket.IO tasks, database client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_SECONDS)
    finally:
        if bound_here and sockets is not None:
            for listening in sockets:
                listening.close()  # already closed after a clean stop: a no-op
        if embedded is not None:
            embedded.stop()
    log.info("stopped")
