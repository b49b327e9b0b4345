"""The app's shared services, typed: ``Services.create`` builds them once per app.

The app's own code reaches them as ``handler.services.users`` (a ``Services``, every
attribute with its type). The registry (``registry['transomMsgClient']``...) holds
the same objects under the transom names, for action modules and user code.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import socketio

from . import registry as keys
from .auth.account_tokens import AccountTokens
from .auth.accounts import Accounts
from .auth.admin import Administration
from .auth.nonces import SocketTokenStore
from .auth.passwords import Passwords
from .auth.revocations import RevocationStore
from .auth.throttle import AccountMailLimits, LoginThrottle, SignupLimit
from .auth.tokens import TokenService
from .auth.users import UserStore
from .config import ConfigError, Settings
from .db import Client, Database
from .mail.sender import Mailer
from .mail.templates import MailTemplates
from .mail.transports import DevOutbox, MailTransport, SmtpTransport
from .metrics import Metrics
from .ratelimit import RateLimiter, SocketTokenLimits, WriteLimits
from .realtime.channel_presence import ChannelPresence, LocalChannelPresence
from .realtime.channels import ChannelManager, Channels
from .realtime.events import ClientEvents
from .realtime.message_client import MessageClient
from .realtime.rooms import sessions_ended_since
from .realtime.server import create_socket_server
from .registry import Registry

__all__ = ["REGISTRY_NAMES", "Services"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    mongo_client: Client
    database: Database
    passwords: Passwords
    users: UserStore
    tokens: TokenService
    login_throttle: LoginThrottle
    signup_limit: SignupLimit
    write_limits: WriteLimits
    socket_token_limits: SocketTokenLimits
    nonces: SocketTokenStore
    metrics: Metrics
    socket_server: socketio.AsyncServer
    message_client: MessageClient
    mailer: Mailer
    # The development outbox (GET /dev/mail) when mail goes there, else None.
    outbox: DevOutbox | None
    verify_tokens: AccountTokens
    reset_tokens: AccountTokens
    mail_limits: AccountMailLimits
    # The app's channels (realtime/channels.py), or None when it declares none.
    channels: ChannelManager | None

    @classmethod
    def create(
        cls,
        settings: Settings,
        mongo_client: Client,
        *,
        client_events: ClientEvents | None = None,
        mail_templates: Path | None = None,
        channels: Channels | None = None,
    ) -> Services:
        """Every service of one app, on ``mongo_client`` (``db.connect``). Only builds
        objects: the start-up I/O is ``app.start``'s. ``client_events``: the events the
        app's sockets may send (realtime/events.py); without it, none is handled.
        ``mail_templates``: the app's folder of mail templates (``verify.txt``...),
        read before the library's defaults. ``channels``: the channel patterns clients
        may subscribe to (realtime/channels.py); without it, none."""
        database = mongo_client[settings.mongodb_db]
        templates = MailTemplates(mail_templates)
        try:
            templates.check(*MAIL_KINDS)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        outbox = DevOutbox(database) if settings.uses_dev_outbox else None
        transport: MailTransport
        if outbox is not None:
            transport = outbox
        else:
            try:
                transport = SmtpTransport.from_url(settings.smtp_url or "")
            except ValueError as error:
                raise ConfigError(str(error)) from None
        try:
            mailer = Mailer(transport, settings.mail_from, templates)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        revocations = RevocationStore(database)
        nonce_store = SocketTokenStore(
            database,
            settings.socket_token_ttl_seconds,
            revocations=revocations,
            # Without Redis the app is one process: the only one using its tokens.
            sole_consumer=settings.redis_url is None,
        )
        metrics = Metrics()
        sio = create_socket_server(settings, nonce_store, metrics)
        services = cls(
            settings=settings,
            mongo_client=mongo_client,
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
                revocations,
                previous_secret=settings.jwt_previous_secret,
                session_ends=functools.partial(sessions_ended_since, sio.manager),
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
            mailer=mailer,
            outbox=outbox,
            verify_tokens=AccountTokens(database, "verify", settings.verify_token_ttl_seconds),
            reset_tokens=AccountTokens(database, "reset", settings.reset_token_ttl_seconds),
            mail_limits=AccountMailLimits(
                database,
                per_account=settings.mail_requests_per_account,
                per_address=settings.mail_requests_per_address,
                token_attempts_per_address=settings.token_attempts_per_address,
                window_seconds=settings.account_mail_window_seconds,
            ),
            channels=None,
        )
        if channels is not None:
            manager = ChannelManager(
                channels,
                sio,
                services,
                channel_presence(settings),
                settings.presence_grace_seconds,
            )
            services = dataclasses.replace(services, channels=manager)
            manager.bind_services(services)
            manager.bind()
            sio.handshake.channels = manager
            services.message_client.channels = channels
        if client_events is not None:
            # Handlers get these services (not a copy made later by ``replace``).
            client_events.bind(sio, services)
        return services

    def replace(self, **changes: Any) -> Services:
        """A copy with some services swapped (tests: ``services.replace(passwords=...)``)."""
        return dataclasses.replace(self, **changes)

    @property
    def accounts(self) -> Accounts:
        """Sign-up, login, logout, socket tokens, verification and password reset and
        change on these services (the app's handlers)."""
        return Accounts(self)

    @property
    def admin(self) -> Administration:
        """The administration of accounts (the admin API's handlers, createadmin)."""
        return Administration(self)

    def register(self, registry: Registry) -> Registry:
        """Put every service in ``registry`` under its registry name; return it."""
        for item in fields(self):
            registry.set(REGISTRY_NAMES[item.name], getattr(self, item.name))
        registry.set(keys.MESSAGE_CLIENT_ALIAS, self.message_client)
        return registry


# The registry name of each attribute (registry.py lists the names).
REGISTRY_NAMES = {
    "settings": keys.SETTINGS,
    "mongo_client": keys.MONGO_CLIENT,
    "database": keys.DATABASE,
    "passwords": keys.PASSWORDS,
    "users": keys.USERS,
    "tokens": keys.TOKENS,
    "login_throttle": keys.LOGIN_THROTTLE,
    "signup_limit": keys.SIGNUP_LIMIT,
    "write_limits": keys.WRITE_LIMITS,
    "socket_token_limits": keys.SOCKET_TOKEN_LIMITS,
    "nonces": keys.NONCE_STORE,
    "metrics": keys.METRICS,
    "socket_server": keys.SOCKET_SERVER,
    "message_client": keys.MESSAGE_CLIENT,
    "mailer": keys.MAILER,
    "outbox": keys.DEV_OUTBOX,
    "verify_tokens": keys.VERIFY_TOKENS,
    "reset_tokens": keys.RESET_TOKENS,
    "mail_limits": keys.MAIL_LIMITS,
    "channels": keys.CHANNELS,
}

# The mails the library sends: each needs its template (mail/templates/<kind>.txt).
MAIL_KINDS = ("verify", "reset", "password_changed")


def channel_presence(settings: Settings) -> ChannelPresence:
    """Channel members in memory, or shared through Redis when REDIS_URL is set."""
    if settings.redis_url is None:
        return LocalChannelPresence()
    from .realtime.redis_channel_presence import RedisChannelPresence  # the redis extra

    return RedisChannelPresence(
        settings.redis_url,
        settings.redis_channel,
        settings.presence_heartbeat_seconds,
        settings.presence_grace_seconds,
    )
