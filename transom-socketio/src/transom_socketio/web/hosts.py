"""Development answers only requests addressed to this machine: a DNS-rebinding guard.

A web page the developer opens can make its own domain resolve to 127.0.0.1 (DNS
rebinding) and then read the development server as same-origin: the development
outbox (every mail's links, ``/dev/mail``), ``/metrics`` (open without a token there)
and the whole API. Such requests still name the page's domain in ``Host``, so the app
answers only requests whose ``Host`` is ``localhost``, a loopback address, or
PUBLIC_URL's host (which is http://HOST:PORT when PUBLIC_URL is unset); another gets
403 ``forbidden_host``. The outbox does so in development and test; the whole app in
development (web/application.py). Production answers every host: it is reached
through the names its operators give it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import tornado.httputil

from .base import BaseHandler
from .errors import ApiError

__all__ = ["LOOPBACK_HOSTS", "ForbiddenHost", "addressed_here", "forbidden_host"]

# The names this machine answers to whatever DNS says (Host, without its port).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def addressed_here(request: tornado.httputil.HTTPServerRequest, public_base_url: str) -> bool:
    """Whether ``request`` names this machine by a loopback name, or PUBLIC_URL's host
    (``public_base_url``), port included."""
    if request.host_name in LOOPBACK_HOSTS:
        return True
    return request.host.lower() == urlsplit(public_base_url).netloc.lower()


def forbidden_host(what: str) -> ApiError:
    """The 403 of a request addressed to another host than ``addressed_here`` accepts."""
    return ApiError(
        403,
        "forbidden_host",
        f"{what} answers only at localhost, a loopback address or PUBLIC_URL's host",
    )


class ForbiddenHost(BaseHandler):
    """Every request development refuses for its ``Host``, whatever its method or path."""

    async def check_request(self) -> None:
        raise forbidden_host("the development server")
