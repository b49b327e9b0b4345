"""engine.io's Tornado ``translate_request``, building the same environ for less.

python-socketio keeps the environ of the request that opened a session for as long as
the session lives (``get_environ``), and engine.io's Tornado driver builds it anew for
every request: a new class for its body reader (``AwaitablePayload``, defined inside
the function), and a new ``HTTP_...`` key string for every header. This builds the
same dict, key for key and value for value, with one body reader class for all
requests and each header's key string made once and shared (at most
``MAX_SHARED_KEYS`` of them: header names are the client's to choose).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

MAX_SHARED_KEYS = 512
_keys: dict[str, str] = {}  # a header's name as Tornado gives it -> its environ key
_protocols: dict[str, str] = {}  # request.version -> SERVER_PROTOCOL
_CONTENT_TYPE = "CONTENT-TYPE"
_CONTENT_LENGTH = "CONTENT-LENGTH"


class AwaitablePayload:
    """A request body, read the way engine.io reads ``wsgi.input`` (the driver's own)."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes | None) -> None:
        self.payload = payload or b""

    async def read(self, length: int | None = None) -> bytes:
        if length is None:
            r = self.payload
            self.payload = b""
        else:
            r = self.payload[:length]
            self.payload = self.payload[length:]
        return r


def _environ_key(name: str) -> str:
    key = _keys.get(name)
    if key is None:
        upper = name.upper()
        if upper == _CONTENT_TYPE:
            key = "CONTENT_TYPE"
        elif upper == _CONTENT_LENGTH:
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_%s" % upper.replace("-", "_")  # noqa: UP031 - as engine.io
        if len(_keys) < MAX_SHARED_KEYS:
            # Interned only as it is kept: on CPython 3.12.0-3.12.5 an interned string
            # is never freed, and the names of a client's headers are its own to choose
            # (found by a review: 800,000 names, +78 MB on 3.12.1).
            key = _keys[name] = sys.intern(key)
    return key


def _protocol(version: str) -> str:
    # engine.io writes "HTTP/%s" % request.version (Tornado's version is "HTTP/1.1").
    protocol = _protocols.get(version)
    if protocol is None:
        protocol = "HTTP/%s" % version  # noqa: UP031 - as engine.io
        if len(_protocols) < MAX_SHARED_KEYS:
            _protocols[version] = protocol
    return protocol


def translate_request(handler: Any) -> dict[str, Any]:
    """The WSGI-like environ of ``handler``'s request, as engine.io's Tornado driver
    (``engineio.async_drivers.tornado.translate_request``) builds it."""
    request = handler.request
    uri_parts = urlsplit(request.path)
    full_uri = request.path
    if request.query:
        full_uri += "?" + request.query
    environ: dict[str, Any] = {
        "wsgi.input": AwaitablePayload(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.async": True,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "aiohttp",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query or "",
        "RAW_URI": full_uri,
        "SERVER_PROTOCOL": _protocol(request.version),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "SERVER_NAME": "aiohttp",
        "SERVER_PORT": "0",
        "tornado.handler": handler,
    }
    for name, value in request.headers.items():
        environ[_environ_key(name)] = value
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    environ["PATH_INFO"] = uri_parts.path
    environ["SCRIPT_NAME"] = ""
    return environ
