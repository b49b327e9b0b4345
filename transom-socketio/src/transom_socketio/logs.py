"""Logging: plain text or one JSON object per line, with request and user ids.

Secrets stay out of logs by construction: every line (text or JSON, its message,
traceback and extra fields) goes through ``redact_text``, which redacts the value of
any query parameter whose *decoded* name means a credential (``?token=``,
``?%74oken=``, ``?TOK%45N=``, ``?sid=`` for engine.io's session id, ``?password=``...),
and no module logs bodies, tokens or password hashes. The access log's message is the
one exception: it is built from the URI that ``redact_url`` redacted by the same rule,
so the formatters do not redact it again.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import secrets
import sys
import time
import unicodedata
from contextvars import ContextVar
from typing import Any, TextIO
from urllib.parse import unquote_plus

import tornado.httputil
import tornado.web

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("user_id", default=None)

# Query parameters whose values must never reach a log line, compared with the name
# decoded, case-folded and stripped of everything but letters and digits.
SECRET_PARAMETERS = frozenset(
    {
        "token", "accesstoken", "refreshtoken", "idtoken", "sockettoken", "jwt", "auth",
        "authorization", "bearer", "password", "passwd", "pwd", "secret", "clientsecret",
        "apikey", "key", "sid", "session", "sessionid", "signature", "sig", "code",
        "nonce",
    }
)  # fmt: skip
REDACTED = "[redacted]"
# A query string inside any text: from "?" to the first blank. A request's URI holds no
# blank (Tornado refuses one), but may hold quotes, brackets and "#", which the server
# reads as part of the query: stopping at them left a token after them in clear.
_QUERY_IN_TEXT = re.compile(r"\?(\S*)")


@functools.lru_cache(maxsize=1024)  # the same few names on every request
def secret_parameter(raw_name: str) -> bool:
    """Whether a query parameter's name, as sent, means a credential once decoded."""
    name = raw_name
    for _round in range(3):  # %2574 is %74 once decoded: decode until it no longer changes
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if ch.isalnum()) in SECRET_PARAMETERS


def redact_query(query: str) -> str:
    """``EIO=4&%74oken=abc`` → ``EIO=4&%74oken=[redacted]`` (names kept as sent).

    The query is read as the server reads it (``realtime/eio_query.py``, Tornado,
    ``parse_qsl``): fields split at ``&`` only, a name before its first ``=``, and the
    value the rest of the field, ``#``, quotes and all. A secret named after a ``;`` in
    a field (some other servers split there too) is redacted to the end of the field.
    """
    return "&".join(_redact_field(field) for field in query.split("&"))


def _redact_field(field: str) -> str:
    name, equals, _value = field.partition("=")
    if equals and secret_parameter(name):  # the server's reading
        return f"{name}={REDACTED}"
    parts = field.split(";")  # other readers'
    for index, part in enumerate(parts[1:], 1):
        name, equals, _value = part.partition("=")
        if equals and secret_parameter(name):
            return ";".join([*parts[:index], f"{name}={REDACTED}"])
    return field


def redact_text(text: str) -> str:
    """Redact the secret parameters of every query string in ``text``."""
    if "?" not in text:
        return text
    return _QUERY_IN_TEXT.sub(lambda m: "?" + redact_query(m.group(1)), text)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def start_request(request: tornado.httputil.HTTPServerRequest) -> str:
    """Give a request its id (the proxy's ``X-Request-ID`` if sane) and tag its log lines."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(16)
    _request_id.set(request_id)
    _user_id.set(None)
    return request_id


def bind_user(user_id: str | None) -> None:
    _user_id.set(user_id)


def redact_url(uri: str) -> str:
    """``/socket.io/?EIO=4&token=abc`` → ``/socket.io/?EIO=4&token=[redacted]``.

    Everything after the first ``?`` is the query, as Tornado splits a request's URI:
    a ``#`` in it is not a fragment (a client sends none), the server reads past it."""
    path, question, query = uri.partition("?")
    if not question:
        return uri
    return f"{path}?{redact_query(query)}"


def _redact_value(name: str, value: Any) -> Any:
    """An extra field of a JSON line: redacted whole when its name means a secret."""
    if secret_parameter(name):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact_value(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", item) for item in value]
    return value


# Set on a record whose message was built from redacted parts (the access log's): the
# formatters need not redact its message again. A traceback is redacted all the same.
REDACTED_MESSAGE = "_redacted_message"


def _message_redacted(record: logging.LogRecord) -> bool:
    return getattr(record, REDACTED_MESSAGE, False) is True and not record.exc_info


class RedactingFormatter(logging.Formatter):
    """Text lines with ``redact_text`` applied to the whole line, traceback included:
    Tornado's ``Uncaught exception GET /socket.io/?token=...`` line, for one, prints
    the request's URI as it came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The default ``asctime`` up to the second, formatted once per second: the
        # access log writes a line per request.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        msec_format = self.default_msec_format
        if datefmt is not None or msec_format is None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)  # one assignment: safe if another thread logs
        return msec_format % (text, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line if _message_redacted(record) else redact_text(line)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Ids given explicitly (the access log passes its handler's) win over the context.
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        if getattr(record, "user_id", None) is None:
            record.user_id = _user_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extras."""

    RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "request_id", "user_id"}

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message if _message_redacted(record) else redact_text(message),
        }
        for name in ("request_id", "user_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in self.RESERVED and not name.startswith("_"):
                entry[name] = _redact_value(name, value)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EveryFewSeconds:
    """Lets a recurring line through at most once every ``seconds``: a Redis stall fails
    every emit, and one line per emit (1,300 in 15 s, found by a review) buries the rest
    of the log."""

    def __init__(self, seconds: float = 10.0) -> None:
        self._seconds = seconds
        self._next = 0.0
        self._held = 0

    def due(self) -> int | None:
        """None if the line waits (it is counted); else how many waited since the last."""
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return None
        held, self._held, self._next = self._held, 0, now + self._seconds
        return held


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log line to ``stream`` (default stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The driver's DEBUG lines hold whole commands and replies (password hashes
    # included), so it never logs below INFO, whatever LOG_LEVEL says.
    logging.getLogger("pymongo").setLevel(max(root.level, logging.INFO))


access_log = logging.getLogger("tornado.access")


# Characters a reader of the text log may take for the end of a line, or for a terminal
# command: C1 controls (Tornado reads a request line's bytes 0x80-0x9F as Latin-1
# characters; it refuses C0 ones) and Unicode's line and paragraph separators.
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029]")


def _printable(text: str) -> str:
    """``text`` with those characters written as ``\\xNN`` / ``\\uNNNN`` escapes."""
    if text.isascii() and "\x7f" not in text:
        return text  # the usual case, checked in C
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado ``log_function``: the access log line, with secrets in the URL redacted."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    request = handler.request
    duration_ms = round(1000.0 * request.request_time(), 2)
    # ``makeRecord`` and ``handle`` rather than ``log``: the same record, filters and
    # handlers, without the walk up the stack for a caller that would only name this
    # function (a request costs two of these lines in a connect storm).
    record = access_log.makeRecord(
        access_log.name,
        level,
        __file__,
        0,
        "%d %s %s (%s) %.2fms",
        (
            status,
            request.method,
            _printable(redact_url(request.uri or "")),
            request.remote_ip,
            duration_ms,
        ),
        None,
        func="log_request",
        extra={
            "status": status,
            "method": request.method,
            "duration_ms": duration_ms,
            # Handlers without an id (static files) log none rather than a stale one.
            "request_id": getattr(handler, "request_id", ""),
            "user_id": getattr(getattr(handler, "current_user", None), "user_id", ""),
            REDACTED_MESSAGE: True,  # its one query string is redacted just above
        },
    )
    access_log.handle(record)
