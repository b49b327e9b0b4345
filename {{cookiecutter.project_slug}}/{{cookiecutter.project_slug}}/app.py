"""The composition root: ``make_app(settings)`` builds the services, the registry and routes.

The services are one typed ``Services`` (``app.settings["services"]``, a handler's
``self.services``); the registry holds the same objects under the transom names.

``make_app`` only constructs objects (the database client connects lazily);
``start(app)`` does the start-up I/O (indexes) and ``stop(app)`` releases
everything. ``server.py`` runs them around the HTTP server, and the tests do the
same with their own settings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tornado.web

from . import db, logs
from .auth import nonces, revocations, throttle, users
from .auth.handlers import (
    LoginHandler,
    LogoutHandler,
    MeHandler,
    SignupHandler,
    SocketTokenHandler,
)
from .auth.nonces import SocketTokenStore
from .auth.passwords import Passwords
from .auth.revocations import RevocationStore
from .auth.throttle import LoginThrottle, SignupLimit
from .auth.tokens import TokenService
from .auth.users import UserStore
from .config import ConfigError, Settings
from .metrics import Metrics
from .models import ENTITIES
from .ratelimit import RateLimiter, SocketTokenLimits, WriteLimits
from .realtime.message_client import MessageClient
from .realtime.server import create_socket_server, socketio_route
from .registry import Registry
from .services import Services
from .web.application import Application
from .web.base import NotFoundHandler
from .web.entities import entity_routes
from .web.health import HealthHandler
from .web.metrics import MetricsHandler
from .web.openapi import OPENAPI_PATH, OpenApiHandler, served_routes
from .web.pages import DemoPageHandler, StaticFiles
from .web.presence import PresenceHandler

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


def make_app(settings: Settings, registry: Registry | None = None) -> tornado.web.Application:
    if settings.mongodb_uri is None:
        raise ConfigError("MONGODB_URI is unset: start the embedded database first (server.py)")
    client = db.connect(settings.mongodb_uri, settings.mongodb_timeout_ms)
    database = client[settings.mongodb_db]
    nonce_store = SocketTokenStore(database, settings.socket_token_ttl_seconds)
    metrics = Metrics()
    sio = create_socket_server(settings, nonce_store, metrics)
    services = Services(
        settings=settings,
        mongo_client=client,
        database=database,
        passwords=Passwords.for_environment(
            settings.app_env,
            settings.password_hashing_concurrency,
            settings.password_hashing_queue,
        ),
        users=UserStore(database),
        tokens=TokenService(
            settings.jwt_secret,
            settings.jwt_ttl_seconds,
            RevocationStore(database),
            previous_secret=settings.jwt_previous_secret,
        ),
        login_throttle=LoginThrottle(
            database, settings.login_max_failures, settings.login_lockout_seconds
        ),
        signup_limit=SignupLimit(
            database, settings.signups_per_address, settings.signup_window_seconds
        ),
        write_limits=WriteLimits(
            per_user=RateLimiter(settings.writes_per_minute_per_user),
            broadcasts_per_user=RateLimiter(settings.broadcasts_per_minute_per_user),
        ),
        socket_token_limits=SocketTokenLimits(
            per_user=RateLimiter(settings.socket_tokens_per_minute_per_user),
            per_address=RateLimiter(settings.socket_tokens_per_minute_per_address),
        ),
        nonces=nonce_store,
        metrics=metrics,
        socket_server=sio,
        message_client=MessageClient(sio, metrics, sio.handshake.presence, sio.history),
    )
    registry = services.register(registry if registry is not None else Registry())

    def request_finished(handler: tornado.web.RequestHandler) -> None:
        logs.log_request(handler)
        metrics.observe_request(handler)

    routes = [
        (r"/", DemoPageHandler),
        (r"/health", HealthHandler),
        (r"/metrics", MetricsHandler, {"metrics": metrics, "settings": settings}),
        (OPENAPI_PATH, OpenApiHandler),
        (r"/api/v1/user/signup", SignupHandler),
        (r"/api/v1/user/login", LoginHandler),
        (r"/api/v1/user/logout", LogoutHandler),
        (r"/api/v1/user/me", MeHandler),
        (r"/api/v1/user/sockettoken", SocketTokenHandler),
        (
            r"/api/v1/presence",
            PresenceHandler,
            {"per_user": RateLimiter(settings.presence_requests_per_minute_per_user)},
        ),
        *entity_routes(ENTITIES),
        socketio_route(sio),
    ]
    app = Application(
        routes,
        trusted_proxy_hops=settings.trusted_proxy_hops,
        registry=registry,
        services=services,
        default_handler_class=NotFoundHandler,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_handler_class=StaticFiles,
        log_function=request_finished,
        # The API authenticates with Bearer tokens, not cookies, so it needs no XSRF
        # cookie; Socket.IO's handler opts out of XSRF checks in any case.
        xsrf_cookies=False,
        debug=False,
    )
    metrics.name_handlers(target for _, target, _ in served_routes(app.default_router))
    return app


def all_indexes() -> list[db.IndexSpec]:
    """Every index the app needs, from each module that owns a collection."""
    specs = [*users.INDEXES, *revocations.INDEXES, *throttle.INDEXES, *nonces.INDEXES]
    for entity in ENTITIES:
        specs.extend(entity.indexes())
    return specs


async def start(app: tornado.web.Application) -> None:
    """Start-up I/O: create the indexes (this also proves the database answers), and
    start delivering the message client's emits."""
    services: Services = app.settings["services"]
    await db.ensure_indexes(services.database, all_indexes())
    await services.message_client.start()


async def stop(app: tornado.web.Application) -> None:
    """Close every socket, stop Socket.IO's background tasks, close the client.

    Sockets are closed at the transport, as when a process exits, not with
    Socket.IO's disconnect packet: that packet tells a client the server sent it
    away, and neither socket.io-client nor python-socketio reconnects after it
    (python-socketio does not after engine.io's CLOSE packet either, which the
    public ``eio.disconnect`` sends). After a
    closed transport they reconnect by themselves (with a fresh socket token) to the
    restarted process, or to another one. ``close_transports`` closes WebSockets
    (and, with the fast path, ends every engine.io socket); long-polling requests
    end when server.py closes the HTTP connections.
    """
    services: Services = app.settings["services"]
    sio = services.socket_server
    await sio.close_transports()
    await sio.shutdown()
    await sio.handshake.close()
    if sio.handshake.recovery is not None:
        await sio.handshake.recovery.close()
    await services.message_client.close()
    services.passwords.close()
    await db.close(services.mongo_client)
