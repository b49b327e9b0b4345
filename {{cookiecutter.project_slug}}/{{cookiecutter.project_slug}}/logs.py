"""Logging: plain text or one JSON object per line, with request and user ids.

Secrets stay out of logs by construction: the access log redacts credentials in
query strings (``?token=...`` from Socket.IO clients), and no module logs bodies,
tokens or password hashes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any, TextIO

import tornado.httputil
import tornado.web

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_user_id: ContextVar[str | None] = ContextVar("user_id", default=None)

# Query parameters whose values must never reach a log line.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|access_token|jwt|auth|password|secret)=)[^&#]*")
REDACTED = "[redacted]"


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def start_request(request: tornado.httputil.HTTPServerRequest) -> str:
    """Give a request its id (the proxy's ``X-Request-ID`` if sane) and tag its log lines."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    _request_id.set(request_id)
    _user_id.set(None)
    return request_id


def bind_user(user_id: str | None) -> None:
    _user_id.set(user_id)


def redact_url(uri: str) -> str:
    """``/socket.io/?EIO=4&token=abc`` → ``/socket.io/?EIO=4&token=[redacted]``."""
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + REDACTED, uri)


# The same parameters inside any log message: the value ends at a space or quote too.
_SECRET_PARAMS_IN_TEXT = re.compile(
    r"(?i)([?&](?:token|access_token|jwt|auth|password|secret)=)[^&#\s'\"]*"
)


class _RedactFilter(logging.Filter):
    """Redacts credentials in URLs that other code logs: Tornado's ``Uncaught exception
    GET /socket.io/?token=...`` line, for one, prints the request's URI as it came."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PARAMS_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


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
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "user_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in self.RESERVED and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log line to ``stream`` (default stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.addFilter(_RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The driver's DEBUG lines hold whole commands and replies (password hashes
    # included), so it never logs below INFO, whatever LOG_LEVEL says.
    logging.getLogger("pymongo").setLevel(max(root.level, logging.INFO))


access_log = logging.getLogger("tornado.access")


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
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        redact_url(request.uri or ""),
        request.remote_ip,
        duration_ms,
        extra={
            "status": status,
            "method": request.method,
            "duration_ms": duration_ms,
            # Handlers without an id (static files) log none rather than a stale one.
            "request_id": getattr(handler, "request_id", ""),
            "user_id": getattr(getattr(handler, "current_user", None), "user_id", ""),
        },
    )
