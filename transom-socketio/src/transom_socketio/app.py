"""Composition: an app's Tornado application on its services, and its start and stop.

A generated app's ``make_app`` builds ``Services.create(settings, client)`` and lists
its routes: ``standard_routes`` (health, metrics, the OpenAPI document, presence), its
own handlers, its entities' ``entity_routes`` and ``socketio_route``. ``application``
only constructs objects (the database client
connects lazily); ``start(app)`` does the start-up I/O (indexes) and ``stop(app)``
releases everything. ``server.serve`` runs them around the HTTP server, and the
tests do the same with their own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tornado.web

from . import db, logs
from .auth import revocations, throttle, users
from .config import Settings
from .mail import transports as mail_transports
from .ratelimit import RateLimiter
from .registry import Registry
from .services import Services
from .web import cors
from .web.application import Application
from .web.base import NotFoundHandler
from .web.channels import ChannelPresenceHandler
from .web.dev_mail import DevMailHandler
from .web.health import HealthHandler
from .web.metrics import MetricsHandler
from .web.openapi import OPENAPI_PATH, OpenApiHandler, api_info, served_routes
from .web.pages import StaticFiles
from .web.presence import PresenceHandler

__all__ = ["application", "standard_routes", "start", "stop"]

log = logging.getLogger(__name__)

Route = tuple[Any, ...]

# The indexes of the library's own collections (users, revoked JWTs, throttles). The
# app lists its own, with the socket tokens' TTL index (a generated app's db.py).
LIBRARY_INDEXES: tuple[db.IndexSpec, ...] = (
    *users.INDEXES,
    *revocations.INDEXES,
    *throttle.INDEXES,
)


def standard_routes(services: Services) -> list[Route]:
    """The routes every app serves besides its own: health, metrics, the OpenAPI
    document, presence and, in development and test without SMTP_URL, the development
    outbox (``/dev/mail``)."""
    settings = services.settings
    dev_mail = [(r"/dev/mail", DevMailHandler)] if services.outbox is not None else []
    presence_limit = RateLimiter(settings.presence_requests_per_minute_per_user)
    channels = (
        [
            (
                r"/api/v1/channels/(?P<channel>[^/]+)/presence",
                ChannelPresenceHandler,
                {"per_user": presence_limit},
            )
        ]
        if services.channels is not None
        else []
    )
    return [
        *dev_mail,
        *channels,
        (r"/health", HealthHandler),
        (r"/metrics", MetricsHandler, {"metrics": services.metrics, "settings": settings}),
        (OPENAPI_PATH, OpenApiHandler),
        (
            r"/api/v1/presence",
            PresenceHandler,
            {"per_user": presence_limit},
        ),
    ]


def application(
    services: Services,
    routes: Sequence[Route],
    *,
    indexes: Iterable[db.IndexSpec] = (),
    template_path: str | Path | None = None,
    static_path: str | Path | None = None,
    registry: Registry | None = None,
    api_title: str | None = None,
    api_version: str | None = None,
) -> Application:
    """The Tornado application serving ``routes`` on ``services``, with the services in
    ``registry`` (a new one by default) under their transom names. ``indexes`` are the
    app's own, created by ``start`` with the library's. ``api_title`` and
    ``api_version`` name the app's API in its OpenAPI document (``info``)."""
    metrics = services.metrics
    registry = services.register(registry if registry is not None else Registry())

    def request_finished(handler: tornado.web.RequestHandler) -> None:
        logs.log_request(handler)
        metrics.observe_request(handler)

    app = Application(
        list(routes),
        trusted_proxy_hops=services.settings.trusted_proxy_hops,
        # A DNS-rebinding guard for a developer's machine (web/hosts.py).
        only_addressed_to=development_base_url(services.settings),
        registry=registry,
        services=services,
        openapi_info=api_info(api_title, api_version),
        api_cors_origins=cors.api_origins(services.settings.cors_allowed_origins),
        indexes=[*LIBRARY_INDEXES, *indexes],
        default_handler_class=NotFoundHandler,
        template_path=None if template_path is None else str(template_path),
        static_path=None if static_path is None else str(static_path),
        static_handler_class=StaticFiles,
        log_function=request_finished,
        # The API authenticates with Bearer tokens, not cookies, so it needs no XSRF
        # cookie; Socket.IO's handler opts out of XSRF checks in any case.
        xsrf_cookies=False,
        debug=False,
    )
    metrics.name_handlers(target for _, target, _ in served_routes(app.default_router))
    return app


def development_base_url(settings: Settings) -> str | None:
    """In development, the base URL whose host the app answers besides this machine's
    loopback names (web/hosts.py); None elsewhere: every host is answered."""
    return settings.public_base_url if settings.app_env == "development" else None


async def start(app: tornado.web.Application) -> None:
    """Start-up I/O: create the indexes (this also proves the database answers), and
    start delivering the message client's emits."""
    services: Services = app.settings["services"]
    indexes = list(app.settings["indexes"])
    if services.outbox is not None:
        indexes += mail_transports.INDEXES
    await db.ensure_indexes(services.database, indexes)
    await services.message_client.start()


async def stop(app: tornado.web.Application) -> None:
    """Close every socket, stop Socket.IO's background tasks, close the client.

    Sockets are closed at the transport, as when a process exits, not with
    Socket.IO's disconnect packet: that packet tells a client the server sent it
    away, and neither socket.io-client nor python-socketio reconnects after it
    (python-socketio does not after engine.io's CLOSE packet either, which the
    public ``eio.disconnect`` sends). After a closed transport they reconnect by
    themselves (with a fresh socket token) to the restarted process, or to another
    one. ``close_transports`` closes WebSockets (and, with the fast path, ends every
    engine.io socket); long-polling requests end when the server closes the HTTP
    connections.
    """
    services: Services = app.settings["services"]
    sio = services.socket_server
    await sio.close_transports()
    await sio.shutdown()
    await sio.handshake.close()
    if sio.handshake.recovery is not None:
        await sio.handshake.recovery.close()
    await services.message_client.close()
    await services.mailer.close(timeout=5.0)
    if services.channels is not None:
        await services.channels.close()
    services.passwords.close()
    await db.close(services.mongo_client)
