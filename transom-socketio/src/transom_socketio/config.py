"""Settings from the environment (and ``.env``), validated once at start-up.

Each setting is ONE field declaration of ``Settings``: its type, default, bounds and
doc. The variable is the field's name in capitals (``port`` is ``PORT``);
``.env.example`` lists every declared variable with its default (a test checks it).
A bad value stops the process with one line naming the variable instead of surfacing
later as a confusing error. Values of secrets and of URLs that may carry credentials
(the fields declared with ``repr=False``) are never echoed back.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import SplitResult, urlsplit

from dotenv import dotenv_values
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["ConfigError", "Settings", "load_settings", "variable"]

MIN_SECRET_BYTES = 32
# A REDIS_URL's path: none, or a database number.
REDIS_DATABASE = re.compile(r"(/\d*)?")
MAX_INTEGER = 2**31


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is the one line shown at start-up."""


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _comma_list(value: Any) -> Any:
    """``"a, b"`` from the environment is the tuple ``("a", "b")``."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Environment = Annotated[Literal["development", "test", "production"], BeforeValidator(_lower)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_lower)]
EventLoop = Annotated[Literal["uvloop", "asyncio"], BeforeValidator(_lower)]
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]


def _count(default: int, doc: str, *, minimum: int = 0, maximum: int = MAX_INTEGER) -> Any:
    """An integer setting within ``[minimum, maximum]``."""
    return Field(default, ge=minimum, le=maximum, description=doc)


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        return False
    return True


class Settings(BaseSettings):
    """The validated configuration of one process.

    ``load_settings()`` reads it from the environment and ``.env``; ``Settings(...)``
    built in code (the tests do) holds exactly its arguments and the defaults.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    app_env: Environment = Field("development", description="development, test or production")
    host: str = Field("127.0.0.1", description="The address the HTTP server listens on.")
    port: int = _count(8000, "The HTTP port (0: any free port).", maximum=65535)
    mongodb_uri: str | None = Field(
        None,
        repr=False,
        description="Unset in development/test: the embedded database (SecantusDB) runs "
        "in-process, data under DATA_DIR. Required in production.",
    )
    mongodb_db: str = Field("transom", description="The database name.")
    mongodb_timeout_ms: int = _count(
        5000,
        "Server-selection, connect and socket timeout of the database client (ms).",
        minimum=100,
    )
    jwt_secret: str = Field(
        # Development without .env: a per-process secret; tokens die with the process.
        default_factory=lambda: secrets.token_urlsafe(48),
        repr=False,
        description="At least 32 bytes; production refuses to start without it.",
    )
    jwt_previous_secret: str | None = Field(
        None,
        repr=False,
        description="During a rotation: the previous secret, still accepted for verification.",
    )
    jwt_ttl_seconds: int = _count(3600, "Lifetime of an access token.", minimum=1)
    socket_token_ttl_seconds: int = _count(30, "Lifetime of a one-time socket token.", minimum=1)
    cors_allowed_origins: CommaList = Field(
        (),
        description="Other origins (scheme://host[:port], comma list) whose pages may open "
        "a socket and call the REST API; * lets any origin open a socket, never call the API.",
    )
    redis_url: str | None = Field(
        None,
        repr=False,
        description="Unset: one process, rooms, history and presence in memory. Set "
        "(redis://127.0.0.1:6379/0): processes share them through this Redis "
        "(pip install 'transom-socketio[redis]').",
    )
    redis_channel: str = Field(
        "transom-socketio",
        description="The prefix of the deployment's Redis keys and its pub/sub channel "
        "(which gets the database number after it unless that is 0): deployments sharing "
        "a Redis server need different databases or different names.",
    )
    presence_heartbeat_seconds: int = _count(
        5,
        "How often a process refreshes its presence; a dead process's sockets stop "
        "counting within 3x this.",
        minimum=1,
        maximum=3600,
    )
    require_verified_email: bool = Field(
        True,
        description="Login answers 403 email_not_verified until the address is verified "
        "(accounts created before verification existed count as verified).",
    )
    smtp_url: str | None = Field(
        None,
        repr=False,
        description="smtp://user:pass@host:port (STARTTLS; required with credentials) or "
        "smtps://... "
        "Unset in development/test: mail goes to the development outbox (GET /dev/mail). "
        "Required in production.",
    )
    mail_from: str = Field("no-reply@localhost", description="The sender of every mail.")
    public_url: str | None = Field(
        None,
        description="The base of the links in mails (https://chat.example.com). Required "
        "in production; unset in development/test: http://HOST:PORT.",
    )
    verify_token_ttl_seconds: int = _count(
        86400, "Lifetime of an email-verification token.", minimum=60
    )
    reset_token_ttl_seconds: int = _count(3600, "Lifetime of a password-reset token.", minimum=60)
    mail_requests_per_account: int = _count(
        5,
        "Verification and reset mails one client asks for one address, per window "
        "(4x that from every client; 0: no limit).",
    )
    mail_requests_per_address: int = _count(
        20, "Verification and reset mails asked from one client address, per window (0: off)."
    )
    token_attempts_per_address: int = _count(
        30, "Verification and reset tokens tried from one client address, per window (0: off)."
    )
    account_mail_window_seconds: int = _count(
        3600, "The window of the three limits above.", minimum=1
    )
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_format: LogFormat = Field("text", description="text or json")
    check_responses: bool = Field(
        True,
        description="Development and test: check each API answer against the status and "
        "model its @operation declares; a mismatch is logged (ERROR) and, with APP_ENV=test, "
        "answered 500 response_mismatch. Never in production.",
    )
    data_dir: Path = Field(Path(".data"), description="Where the embedded database keeps data.")
    trusted_proxy_hops: int = _count(
        0,
        "Proxies in front of the app that append to X-Forwarded-For; the client address "
        "is the entry that many from the right (0: the TCP peer, proxy headers ignored).",
        maximum=10,
    )
    metrics_token: str | None = Field(
        None,
        repr=False,
        description="At least 32 bytes: /metrics then needs Authorization: Bearer <token>. "
        "Unset: /metrics is open in development/test and absent (404) in production.",
    )
    login_max_failures: int = _count(5, "Login attempts per account and address.", minimum=1)
    login_lockout_seconds: int = _count(300, "The login throttle's window.", minimum=1)
    signups_per_address: int = _count(10, "Sign-ups per client address (0: no limit).")
    signup_window_seconds: int = _count(3600, "The sign-up limit's window.", minimum=1)
    password_hashing_concurrency: int = _count(
        2, "Password hashes computed at once.", minimum=1, maximum=64
    )
    password_hashing_queue: int = _count(32, "Hashes that may wait; beyond that, 503.")
    writes_per_minute_per_user: int = _count(120, "Writes under /api/v1/db (0: no limit).")
    broadcasts_per_minute_per_user: int = _count(12, "Messages without to (0: no limit).")
    presence_events: bool = Field(
        False,
        description="Tell every socket when any user comes online or goes offline (the "
        "presence event). Costs a delivery to every socket per change: prefer presence "
        "channels (realtime/channels.py). The presence API works either way.",
    )
    presence_grace_seconds: int = _count(
        3,
        "A user whose last socket goes is announced offline only if none came back within "
        "this many seconds.",
        maximum=60,
    )
    presence_announcements_per_minute_per_user: int = _count(
        10, "Online/offline announcements of one user a minute, per process (0: no cap)."
    )
    max_body_bytes: int = _count(64 * 1024, "Largest JSON request body.", minimum=1024)
    http_idle_timeout_seconds: int = _count(
        65, "Wait for a request's headers, or an idle connection's next.", minimum=1, maximum=3600
    )
    http_body_timeout_seconds: int = _count(
        30, "Wait for a request's whole body.", minimum=1, maximum=3600
    )
    socketio_ping_interval: int = _count(25, "Socket.IO ping interval (s).", minimum=1)
    socketio_ping_timeout: int = _count(20, "Socket.IO ping timeout (s).", minimum=1)
    socketio_max_message_bytes: int = _count(64 * 1024, "Largest Socket.IO message.", minimum=1024)
    socketio_transports: CommaList = Field(
        ("polling", "websocket"), description="polling,websocket or websocket alone."
    )
    socketio_connect_timeout_seconds: int = _count(
        20, "Seconds a new session has to complete Socket.IO's CONNECT.", minimum=1, maximum=3600
    )
    socketio_max_pending_per_address: int = _count(
        20, "Sessions per address not connected yet (0: no limit)."
    )
    socketio_inbound_packets_per_second: int = _count(
        10, "Packets a socket may send per second, after its burst (0: no limit).", maximum=10_000
    )
    socketio_inbound_burst: int = _count(
        100, "Packets a socket may send at once.", minimum=10, maximum=100_000
    )
    max_sockets_per_user: int = _count(20, "Open sockets per user (on every process).", minimum=1)
    socket_tokens_per_minute_per_user: int = _count(60, "Socket tokens per user (0: off).")
    socket_tokens_per_minute_per_address: int = _count(600, "Socket tokens per address.")
    handshakes_per_minute_per_address: int = _count(600, "Handshakes per address (0: off).")
    presence_requests_per_minute_per_user: int = _count(
        60, "GET /api/v1/presence requests per user (0: off)."
    )
    recovery_enabled: bool = Field(
        True, description="Keep emitted messages so a reconnecting socket can recover them."
    )
    recovery_retention_seconds: int = _count(
        600, "How long a message stays recoverable.", minimum=1, maximum=7 * 24 * 3600
    )
    recovery_max_messages: int = _count(
        10_000, "Messages kept for recovery, for the whole deployment.", minimum=1
    )
    recovery_max_unsent_bytes: int = _count(
        256 * 1024,
        "Bytes a replay may hand a socket before its transport has taken them.",
        minimum=16 * 1024,
        maximum=64 * 1024 * 1024,
    )
    recovery_stall_seconds: int = _count(
        10,
        "A replay's socket that takes nothing for this long is cut off; also the longest "
        "wait for a replay's turn.",
        minimum=1,
        maximum=300,
    )
    recovery_replays_per_user: int = _count(
        2, "Replays of one user under way at once (per process).", minimum=1, maximum=100
    )
    recovery_replays_per_process: int = _count(
        16, "Replays under way at once in one process.", minimum=1, maximum=10_000
    )
    recoveries_per_minute_per_user: int = _count(
        40,
        "Recoveries a user may ask for a minute (per process, and with Redis in the "
        "whole deployment too; 0: no limit).",
    )
    fast_fanout: bool = Field(
        True, description="The fast path (realtime/accel/); on only for its tested versions."
    )
    event_loop: EventLoop | None = Field(
        None, description="uvloop or asyncio; empty: uvloop where it is installed."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        *_others: PydanticBaseSettingsSource,
        **_named: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the arguments: ``load_settings`` alone reads the environment and ``.env``."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _production_requires(cls, values: Any) -> Any:
        if isinstance(values, dict) and _lower(values.get("app_env")) == "production":
            for name in ("mongodb_uri", "jwt_secret", "smtp_url", "public_url"):
                if values.get(name) is None:
                    raise ValueError(f"{name.upper()} is required when APP_ENV=production")
        return values

    @field_validator("jwt_secret", "jwt_previous_secret", "metrics_token")
    @classmethod
    def _long_enough(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            name = variable(info.field_name or "")
            raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes long")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_uri(cls, value: str | None) -> str | None:
        """The scheme, and every option as the driver reads it: PyMongo only warns about
        an option it cannot read (``?tls=yes``) and goes on without it. Never echoed:
        the URI may hold a password."""
        if value is None:
            return value
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("MONGODB_URI must start with mongodb:// or mongodb+srv://")
        from pymongo.errors import ConfigurationError
        from pymongo.uri_parser import parse_uri

        # The options of a mongodb+srv:// URI are read as those of a mongodb:// one:
        # parsing it as it is would look its hosts up in the DNS, at start-up.
        plain = "mongodb://" + value.split("://", 1)[1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an option PyMongo would drop: refused
                parse_uri(plain, validate=True, warn=False)
        except (ConfigurationError, ValueError, UserWarning) as error:
            raise ValueError(f"MONGODB_URI is invalid: {_safe_reason(error, value)}") from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"PUBLIC_URL must start with http:// or https://, got {value!r}")
        try:
            parts = urlsplit(value)
            host, _port = parts.hostname, parts.port  # a port out of range: ValueError
        except ValueError:
            host = None
        if not host or any(ch.isspace() or ord(ch) < 32 for ch in value):
            # The base of every link in a mail: a link to nowhere, or to a broken one.
            raise ValueError(f"PUBLIC_URL must name a host, with no spaces, got {value!r}")
        if "@" in parts.netloc or parts.query or parts.fragment or "?" in value or "#" in value:
            # A user part makes the link read as another site's (https://bank.example@
            # evil.example); a query or a fragment breaks every link built on it.
            raise ValueError(
                f"PUBLIC_URL is a scheme, a host, a port and a path, nothing else, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """The scheme, the port and the database number, read here: redis-py's own
        errors quote the URL (a password with an unencoded ``/`` reads as the port), and
        it takes a path that is not a number for database 0. Never echoed."""
        if value is None:
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        if value.startswith("unix://"):
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - reading it checks it
        except ValueError:
            raise ValueError(
                "REDIS_URL is malformed (a bad port? characters like / ? # @ : in the "
                "password must be percent-encoded)"
            ) from None
        if not parts.hostname:
            raise ValueError("REDIS_URL has no host")
        if not REDIS_DATABASE.fullmatch(parts.path):
            raise ValueError(
                "REDIS_URL's path must be empty or a database number, as in "
                "redis://host:6379/0 (characters like / ? # in the password must be "
                "percent-encoded)"
            )
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_installed(cls, value: str | None) -> str | None:
        if value is not None and importlib.util.find_spec("redis") is None:
            raise ValueError(
                "REDIS_URL is set but redis-py is not installed: "
                "pip install 'transom-socketio[redis]'"
            )
        return value

    @field_validator("mongodb_db")
    @classmethod
    def _database_name(cls, value: str) -> str:
        if not 1 <= len(value) <= 63 or any(ch in value for ch in '/\\. "$'):
            raise ValueError(
                f'MONGODB_DB must be 1-63 characters without / \\ . space " or $, got {value!r}'
            )
        return value

    @field_validator("socketio_transports")
    @classmethod
    def _transports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        transports = tuple(part.lower() for part in value)
        if not transports or not set(transports) <= {"polling", "websocket"}:
            raise ValueError(
                f"SOCKETIO_TRANSPORTS must be polling, websocket or both, got {','.join(value)!r}"
            )
        return transports

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Browsers send an origin as scheme://host[:port], the host in lower case.
        origins = tuple(origin.rstrip("/").lower() for origin in value)
        for origin in origins:
            parts = urlsplit(origin)
            if origin != "*" and (
                not _has_valid_port(parts)
                or parts.scheme not in ("http", "https")
                or not parts.hostname
                or "@" in parts.netloc
                or parts.path
                or parts.query
                or parts.fragment
                or origin.endswith(("?", "#"))
            ):
                raise ValueError(
                    "CORS_ALLOWED_ORIGINS entries must be * or an origin, "
                    f"http(s)://host[:port] without a path, got {origin!r}"
                )
        return origins

    @field_validator("event_loop", mode="after")
    @classmethod
    def _installed_loop(cls, value: str | None) -> str:
        """EVENT_LOOP: uvloop by default where it is installed (everywhere but Windows)."""
        installed = importlib.util.find_spec("uvloop") is not None
        if value is None:
            return "uvloop" if installed else "asyncio"
        if value == "uvloop" and not installed:
            raise ValueError("EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop")
        return value

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def checks_responses(self) -> bool:
        """Whether API answers are checked against their operations (web/response_checks.py):
        CHECK_RESPONSES, and never in production."""
        return self.check_responses and not self.is_production

    @property
    def public_base_url(self) -> str:
        """The base of the links in mails: PUBLIC_URL, else http://HOST:PORT."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def uses_dev_outbox(self) -> bool:
        """Mail goes to the development outbox (GET /dev/mail): no SMTP_URL, not production."""
        return self.smtp_url is None and not self.is_production

    @property
    def uses_embedded_db(self) -> bool:
        """Development and tests without MONGODB_URI run the embedded database."""
        return self.mongodb_uri is None


# An app's subclass of Settings, as load_settings returns it.
AppSettings = TypeVar("AppSettings", bound=Settings)

# Variables that no longer exist. Set to anything that turned them on, they stop
# start-up with this line rather than being ignored: the rule they named changed.
RETIRED = {
    "TRUST_PROXY_HEADERS": "TRUST_PROXY_HEADERS was replaced by TRUSTED_PROXY_HOPS, the number "
    "of proxies that append to X-Forwarded-For (X-Real-IP is no longer read): set "
    "TRUSTED_PROXY_HOPS=1 behind one proxy and remove TRUST_PROXY_HEADERS (the engine's "
    'security notes, "Behind a proxy": python -m transom_socketio.docs security)',
}
_OFF = frozenset({"", "false", "0", "no", "off", "n", "f"})


def variable(name: str) -> str:
    """The environment variable of the setting ``name``."""
    return name.upper()


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    settings_class: type[AppSettings] = Settings,  # type: ignore[assignment]
) -> AppSettings:
    """Read ``settings_class`` (the app's subclass of ``Settings``) from ``environ``
    (default ``os.environ``) over the values of ``env_file``.

    An empty variable counts as unset (the default, not the file's value). Raises
    ConfigError with a one-line message naming the first bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    for name, replaced in RETIRED.items():
        if values.get(name, "").strip().lower() not in _OFF:
            raise ConfigError(replaced)
    arguments: dict[str, Any] = {
        name: values[variable(name)].strip()
        for name in settings_class.model_fields
        if values.get(variable(name), "").strip()
    }
    try:
        return settings_class(**arguments)
    except ValidationError as error:
        raise ConfigError(one_line(error, arguments, settings_class)) from None


def one_line(
    error: ValidationError, given: Mapping[str, str], settings_class: type[Settings] = Settings
) -> str:
    """pydantic's first error as one line naming the variable, with the value as
    ``given`` (before normalisation); the values of secrets are never shown."""
    first = error.errors(include_url=False)[0]
    if not first["loc"]:
        return str(first["ctx"]["error"])
    name = str(first["loc"][0])
    field = settings_class.model_fields[name]
    kind, value = first["type"], given.get(name, first.get("input"))
    shown = "" if field.repr is False else f", got {value!r}"
    if kind == "value_error":
        return str(first["ctx"]["error"])
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{variable(name)} must be an integer{shown}"
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(field)
        return f"{variable(name)} must be between {low} and {high}, got {value}"
    if kind == "literal_error":
        allowed = ", ".join(_choices(field.annotation))
        return f"{variable(name)} must be one of {allowed}{shown}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{variable(name)} must be true or false{shown}"
    return f"{variable(name)} is invalid: {first['msg']}"


def _safe_reason(error: BaseException, uri: str) -> str:
    """PyMongo's reason for refusing ``uri``, unless it might quote the URI's user name or
    password (then a general one): its messages name options, not values, today."""
    reason = str(error).split("\n", 1)[0].rstrip(".")
    credentials = uri.split("://", 1)[-1].rpartition("@")[0]
    pieces = [piece for piece in re.split(r"[:@/?#&=]", credentials) if len(piece) >= 3]
    if "://" in reason or any(piece in reason for piece in pieces):
        reason = "a bad host, port or option"
    if "option" in reason.lower() or "value of" in reason.lower():
        return reason
    return (
        f"{reason} (characters like / ? # @ : in the user name or password must be percent-encoded)"
    )


def _bounds(field: FieldInfo) -> tuple[int, int]:
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), 0)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), MAX_INTEGER)
    return low, high


def _choices(annotation: Any) -> tuple[str, ...]:
    """The values of the ``Literal[...]`` in ``annotation`` (also inside Annotated or | None)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if choices := _choices(arg):
            return choices
    return ()
