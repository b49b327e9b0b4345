"""The app's shared services, typed: what ``make_app`` builds once per app.

The app's own code reaches them as ``handler.services.users`` (a ``Services``, every
attribute with its type). The registry (``registry['transomMsgClient']``...) holds
the same objects under the transom names, for action modules and user code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import socketio

from . import registry as keys
from .auth.nonces import SocketTokenStore
from .auth.passwords import Passwords
from .auth.throttle import LoginThrottle, SignupLimit
from .auth.tokens import TokenService
from .auth.users import UserStore
from .config import Settings
from .db import Client, Database
from .metrics import Metrics
from .ratelimit import SocketTokenLimits, WriteLimits
from .realtime.message_client import MessageClient
from .registry import Registry


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
}
