"""Settings from the environment (and ``.env``), validated once at start-up.

Every value is checked here, so a typo stops the process with one line naming the
variable instead of surfacing later as a confusing error. Values of secrets and of
URLs that may carry credentials are never echoed back.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
EVENT_LOOPS = ("uvloop", "asyncio")
MIN_SECRET_BYTES = 32

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is the one line shown at start-up."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one process. See ``.env.example`` for each variable."""

    app_env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    mongodb_uri: str | None = field(default=None, repr=False)
    mongodb_db: str = "{{ cookiecutter.project_slug }}"
    mongodb_timeout_ms: int = 5000
    jwt_secret: str = field(default="", repr=False)
    jwt_previous_secret: str | None = field(default=None, repr=False)
    jwt_ttl_seconds: int = 3600
    socket_token_ttl_seconds: int = 30
    cors_allowed_origins: tuple[str, ...] = ()
{%- if cookiecutter.message_queue == "redis" %}
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_channel: str = "{{ cookiecutter.project_slug }}-socketio"
    presence_heartbeat_seconds: int = 5
{%- endif %}
    log_level: str = "INFO"
    log_format: str = "text"
    data_dir: Path = Path(".data")
    trust_proxy_headers: bool = False
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    signups_per_address: int = 10
    signup_window_seconds: int = 3600
    password_hashing_concurrency: int = 2
    password_hashing_queue: int = 32
    writes_per_minute_per_user: int = 120
    broadcasts_per_minute_per_user: int = 12
    max_body_bytes: int = 64 * 1024
    socketio_ping_interval: int = 25
    socketio_ping_timeout: int = 20
    socketio_max_message_bytes: int = 64 * 1024
    socketio_transports: tuple[str, ...] = ("polling", "websocket")
    socketio_connect_timeout_seconds: int = 20
    socketio_max_pending_per_address: int = 20
    max_sockets_per_user: int = 20
    socket_tokens_per_minute_per_user: int = 60
    socket_tokens_per_minute_per_address: int = 600
    handshakes_per_minute_per_address: int = 600
    fast_fanout: bool = True
    event_loop: str = "asyncio"  # load_settings picks uvloop where it is installed

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def uses_embedded_db(self) -> bool:
        """Development and tests without MONGODB_URI run the embedded database."""
        return self.mongodb_uri is None


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``) over the values of ``env_file``.

    Raises ConfigError with a one-line message naming the first bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return _parse(_Reader(values))


class _Reader:
    """Typed access to raw string values; every failure names the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        normalised = value.upper() if allowed == LOG_LEVELS else value.lower()
        if normalised not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return normalised

    def integer(self, name: str, default: int, minimum: int, maximum: int = 2**31) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def checked(self, name: str, default: T, check: Callable[[str], T]) -> T:
        value = self.raw(name)
        return default if value is None else check(value)


def _parse(read: _Reader) -> Settings:
    app_env = read.choice("APP_ENV", "development", ENVIRONMENTS)
    mongodb_uri = read.checked("MONGODB_URI", None, _mongodb_uri)
    if app_env == "production" and mongodb_uri is None:
        raise ConfigError("MONGODB_URI is required when APP_ENV=production")
    return Settings(
        app_env=app_env,
        host=read.text("HOST", "127.0.0.1"),
        port=read.integer("PORT", 8000, minimum=0, maximum=65535),
        mongodb_uri=mongodb_uri,
        mongodb_db=read.checked("MONGODB_DB", Settings.mongodb_db, _database_name),
        mongodb_timeout_ms=read.integer("MONGODB_TIMEOUT_MS", 5000, minimum=100),
        jwt_secret=_jwt_secret(read.raw("JWT_SECRET"), app_env),
        jwt_previous_secret=read.checked(
            "JWT_PREVIOUS_SECRET", None, lambda v: _secret("JWT_PREVIOUS_SECRET", v)
        ),
        jwt_ttl_seconds=read.integer("JWT_TTL_SECONDS", 3600, minimum=1),
        socket_token_ttl_seconds=read.integer("SOCKET_TOKEN_TTL_SECONDS", 30, minimum=1),
        cors_allowed_origins=read.checked("CORS_ALLOWED_ORIGINS", (), _origins),
{%- if cookiecutter.message_queue == "redis" %}
        redis_url=read.checked("REDIS_URL", Settings.redis_url, _redis_url),
        redis_channel=read.text("REDIS_CHANNEL", Settings.redis_channel),
        presence_heartbeat_seconds=read.integer(
            "PRESENCE_HEARTBEAT_SECONDS", Settings.presence_heartbeat_seconds, 1, 3600
        ),
{%- endif %}
        log_level=read.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
        log_format=read.choice("LOG_FORMAT", "text", LOG_FORMATS),
        data_dir=Path(read.text("DATA_DIR", ".data")),
        trust_proxy_headers=read.boolean("TRUST_PROXY_HEADERS", False),
        login_max_failures=read.integer("LOGIN_MAX_FAILURES", 5, minimum=1),
        login_lockout_seconds=read.integer("LOGIN_LOCKOUT_SECONDS", 300, minimum=1),
        signups_per_address=read.integer("SIGNUPS_PER_ADDRESS", 10, minimum=0),
        signup_window_seconds=read.integer("SIGNUP_WINDOW_SECONDS", 3600, minimum=1),
        password_hashing_concurrency=read.integer(
            "PASSWORD_HASHING_CONCURRENCY", 2, minimum=1, maximum=64
        ),
        password_hashing_queue=read.integer("PASSWORD_HASHING_QUEUE", 32, minimum=0),
        writes_per_minute_per_user=read.integer("WRITES_PER_MINUTE_PER_USER", 120, minimum=0),
        broadcasts_per_minute_per_user=read.integer(
            "BROADCASTS_PER_MINUTE_PER_USER", 12, minimum=0
        ),
        max_body_bytes=read.integer("MAX_BODY_BYTES", 64 * 1024, minimum=1024),
        socketio_ping_interval=read.integer("SOCKETIO_PING_INTERVAL", 25, minimum=1),
        socketio_ping_timeout=read.integer("SOCKETIO_PING_TIMEOUT", 20, minimum=1),
        socketio_max_message_bytes=read.integer(
            "SOCKETIO_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1024
        ),
        socketio_transports=read.checked(
            "SOCKETIO_TRANSPORTS", ("polling", "websocket"), _transports
        ),
        socketio_connect_timeout_seconds=read.integer(
            "SOCKETIO_CONNECT_TIMEOUT_SECONDS", 20, minimum=1, maximum=3600
        ),
        socketio_max_pending_per_address=read.integer(
            "SOCKETIO_MAX_PENDING_PER_ADDRESS", 20, minimum=0
        ),
        max_sockets_per_user=read.integer("MAX_SOCKETS_PER_USER", 20, minimum=1),
        socket_tokens_per_minute_per_user=read.integer(
            "SOCKET_TOKENS_PER_MINUTE_PER_USER", 60, minimum=0
        ),
        socket_tokens_per_minute_per_address=read.integer(
            "SOCKET_TOKENS_PER_MINUTE_PER_ADDRESS", 600, minimum=0
        ),
        handshakes_per_minute_per_address=read.integer(
            "HANDSHAKES_PER_MINUTE_PER_ADDRESS", 600, minimum=0
        ),
        fast_fanout=read.boolean("FAST_FANOUT", True),
        event_loop=_event_loop(read),
    )


def _event_loop(read: _Reader) -> str:
    """EVENT_LOOP: uvloop by default where it is installed (everywhere but Windows)."""
    installed = importlib.util.find_spec("uvloop") is not None
    name = read.choice("EVENT_LOOP", "uvloop" if installed else "asyncio", EVENT_LOOPS)
    if name == "uvloop" and not installed:
        raise ConfigError("EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop")
    return name


def _jwt_secret(value: str | None, app_env: str) -> str:
    if value is None:
        if app_env == "production":
            raise ConfigError("JWT_SECRET is required when APP_ENV=production")
        # Development without .env: a per-process secret; tokens die with the process.
        return secrets.token_urlsafe(48)
    return _secret("JWT_SECRET", value)


def _secret(name: str, value: str) -> str:
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long")
    return value


def _mongodb_uri(value: str) -> str:
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URI must start with mongodb:// or mongodb+srv://")
    return value


{% if cookiecutter.message_queue == "redis" -%}
def _redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return value


{% endif -%}
def _database_name(value: str) -> str:
    if len(value) > 63 or any(ch in value for ch in '/\\. "$'):
        raise ConfigError(
            f'MONGODB_DB must be 1-63 characters without / \\ . space " or $, got {value!r}'
        )
    return value


def _transports(value: str) -> tuple[str, ...]:
    transports = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    if not transports or not set(transports) <= {"polling", "websocket"}:
        raise ConfigError(f"SOCKETIO_TRANSPORTS must be polling, websocket or both, got {value!r}")
    return transports


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(
                f"CORS_ALLOWED_ORIGINS entries must be * or start with http:// or https://, "
                f"got {origin!r}"
            )
    return origins
