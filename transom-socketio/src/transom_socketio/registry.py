"""The service locator: one place where the app's shared services are found by name.

Handlers, Socket.IO events and model actions reach the services they need through
``registry['name']`` instead of importing globals, so tests can build an app with
its own registry and the transom names (``transomMsgClient``...) keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MESSAGE_CLIENT", "MESSAGE_CLIENT_ALIAS", "NONCE_STORE", "SOCKET_SERVER", "Registry"]

# Well-known keys, so a typo is a NameError rather than a KeyError at run time.
SETTINGS = "settings"
MONGO_CLIENT = "mongoClient"
DATABASE = "db"
USERS = "users"
PASSWORDS = "passwords"
TOKENS = "tokens"
LOGIN_THROTTLE = "loginThrottle"
SIGNUP_LIMIT = "signupLimit"
WRITE_LIMITS = "writeLimits"
NONCE_STORE = "transomNonce"
SOCKET_TOKEN_LIMITS = "socketTokenLimits"  # noqa: S105 - a registry key, not a secret
MESSAGE_CLIENT = "transomMsgClient"
MESSAGE_CLIENT_ALIAS = "transomMessageClient"
SOCKET_SERVER = "socketServer"
METRICS = "metrics"
MAILER = "mailer"
DEV_OUTBOX = "devOutbox"
VERIFY_TOKENS = "verifyTokens"
RESET_TOKENS = "resetTokens"
MAIL_LIMITS = "mailLimits"
CHANNELS = "channels"

_MISSING = object()


class Registry:
    """A name → service mapping that refuses silent overwrites."""

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._services[key]
        except KeyError:
            known = ", ".join(sorted(self._services)) or "nothing"
            raise KeyError(f"{key!r} is not registered (registered: {known})") from None

    def __contains__(self, key: object) -> bool:
        return key in self._services

    def __iter__(self) -> Iterator[str]:
        return iter(self._services)

    def __len__(self) -> int:
        return len(self._services)

    def get(self, key: str, default: Any = None) -> Any:
        return self._services.get(key, default)

    def set(self, key: str, value: Any, *, replace: bool = False) -> Any:
        """Register ``value`` under ``key`` and return it.

        Registering a key twice is almost always a wiring mistake, so it raises
        unless ``replace=True`` says it is meant.
        """
        if not isinstance(key, str) or not key:
            raise TypeError("registry keys must be non-empty strings")
        if key in self._services and not replace:
            raise KeyError(f"{key!r} is already registered; pass replace=True to replace it")
        self._services[key] = value
        return value

    def remove(self, key: str, default: Any = _MISSING) -> Any:
        """Unregister ``key`` and return its value (``default`` if given and absent)."""
        if default is _MISSING:
            value = self[key]
            del self._services[key]
            return value
        return self._services.pop(key, default)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._services)})"
