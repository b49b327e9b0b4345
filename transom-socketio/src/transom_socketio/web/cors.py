"""CORS for the REST API: a front end served from another origin calls it from the browser.

The origins are CORS_ALLOWED_ORIGINS, the setting that also lets them open a socket
(realtime/server.py). The API answers them only by exact origin: a ``*`` in that
setting lets any origin open a socket (which takes a socket token, so a JWT), but
never makes the REST API answer any page. Its unauthenticated routes (signup, login,
password reset) would otherwise be open to every site's visitors' browsers, from their
addresses, past the limits per address.

There are no credentials to allow: the API authenticates with the ``Authorization``
header, never a cookie. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
is answered before authentication and limits, 204 for a listed origin and 403
``origin_not_allowed`` for any other; a plain ``OPTIONS`` is answered as before (405).
"""

from __future__ import annotations

from collections.abc import Iterable

import tornado.web

from .errors import ApiError

__all__ = [
    "ALLOWED_HEADERS",
    "EXPOSED_HEADERS",
    "answer_preflight",
    "api_origins",
    "expose",
    "methods_of",
]

# What the API reads from a request besides the CORS-safelisted headers, and what a
# front end may read of an answer besides the safelisted ones.
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match, X-Request-ID"
EXPOSED_HEADERS = "ETag, Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE_SECONDS = 600
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SETTING = "api_cors_origins"  # the application setting that holds them


def api_origins(configured: Iterable[str]) -> frozenset[str]:
    """The origins the REST API answers: CORS_ALLOWED_ORIGINS without ``*``."""
    return frozenset(origin for origin in configured if origin != "*")


def expose(handler: tornado.web.RequestHandler) -> None:
    """Let a listed origin's page read this answer (every answer, errors too)."""
    origins: frozenset[str] = handler.application.settings.get(SETTING, frozenset())
    if not origins:
        return
    handler.set_header("Vary", "Origin")
    origin = handler.request.headers.get("Origin")
    if origin in origins:
        handler.set_header("Access-Control-Allow-Origin", origin)
        handler.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS)


def answer_preflight(handler: tornado.web.RequestHandler) -> bool:
    """Answer a CORS preflight (True: answered); False for any other request."""
    request = handler.request
    origin = request.headers.get("Origin")
    if not origin or "Access-Control-Request-Method" not in request.headers:
        return False
    if origin not in handler.application.settings.get(SETTING, frozenset()):
        raise ApiError(403, "origin_not_allowed", "this API does not answer pages of that origin")
    handler.set_header("Access-Control-Allow-Methods", ", ".join(methods_of(type(handler))))
    handler.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
    handler.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS))
    handler.clear_header("Content-Type")
    handler.set_status(204)
    handler.finish()
    return True


def methods_of(handler_class: type[tornado.web.RequestHandler]) -> tuple[str, ...]:
    """The methods a handler class serves (RequestHandler's own answer 405); the OpenAPI
    check of an app's routes (testing/openapi.py) compares the same."""
    methods = _methods.get(handler_class)
    if methods is None:
        methods = _methods[handler_class] = tuple(
            method
            for method in METHODS
            if getattr(handler_class, method.lower())
            is not getattr(tornado.web.RequestHandler, method.lower())
        )
    return methods


_methods: dict[type[tornado.web.RequestHandler], tuple[str, ...]] = {}
