"""The app's Tornado ``Application``: Tornado's, plus the one rule for the client address.

Everything that uses the client's address reads ``request.remote_ip``: the REST
handlers (``client_ip``) and the login, sign-up and socket-token limits, the
Socket.IO route's session binding and per-address caps (realtime/transport.py),
the handshake's rate limit (realtime/handshake.py's ``client_address``) and the
access log. ``Application.find_handler`` sets it once, as each request arrives and
before any handler runs, by this rule (SECURITY.md, "Behind a proxy"):

- ``TRUSTED_PROXY_HOPS=0`` (the default): the TCP peer. No header is read.
- ``TRUSTED_PROXY_HOPS=N``: N proxies stand in front of the app, and each appends
  the address it received the request from to ``X-Forwarded-For``. The last N entries
  were written by them, so the client is the N-th entry from the right; whatever a
  client writes itself lies to the left of it and is never read. ``X-Real-IP``,
  ``Forwarded`` and the like, which a client can send too, are never read. With fewer
  than N entries (a request that did not pass every proxy) or an entry that is not an
  IP address, the address is the TCP peer's.

Serve this app with Tornado's ``xheaders`` off (server.py does): Tornado's own rule
lets a client-sent ``X-Real-IP`` win.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import tornado.httputil
import tornado.web

from . import hosts

__all__ = ["Application"]

FORWARDED_FOR = "X-Forwarded-For"
FORWARDED_PROTO = "X-Forwarded-Proto"


def client_address(peer: str | None, forwarded_for: str | None, hops: int) -> str | None:
    """The client's address: the ``hops``-th entry from the right of ``forwarded_for``,
    else ``peer`` (the TCP peer), as the module's docstring says."""
    if hops == 0 or not forwarded_for:
        return peer
    entries = forwarded_for.split(",")
    if len(entries) < hops:
        return peer
    return _ip_address(entries[-hops]) or peer


def _ip_address(entry: str) -> str | None:
    """``entry`` as an IP address (proxies may add a port: ``[v6]:port``, ``v4:port``)."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


def forwarded_protocol(protocol: str, forwarded_proto: str | None, hops: int) -> str:
    """``http`` or ``https`` as the nearest proxy received it (the right-most entry of
    ``X-Forwarded-Proto``, which proxies set or append to); ``protocol`` without one."""
    if hops == 0 or not forwarded_proto:
        return protocol
    last = forwarded_proto.split(",")[-1].strip().lower()
    return last if last in ("http", "https") else protocol


class Application(tornado.web.Application):
    """``tornado.web.Application`` that applies the client-address rule to each request
    and, given ``only_addressed_to`` (development: PUBLIC_URL, or http://HOST:PORT),
    answers only requests addressed to this machine or that URL's host (web/hosts.py)."""

    def __init__(
        self,
        *args: Any,
        trusted_proxy_hops: int = 0,
        only_addressed_to: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.trusted_proxy_hops = trusted_proxy_hops
        self.only_addressed_to = only_addressed_to

    # Tornado annotates its return with a private class; the public base suffices here.
    def find_handler(  # type: ignore[override]
        self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any
    ) -> tornado.httputil.HTTPMessageDelegate:
        hops = self.trusted_proxy_hops
        if hops:
            headers = request.headers
            request.remote_ip = client_address(request.remote_ip, headers.get(FORWARDED_FOR), hops)
            request.protocol = forwarded_protocol(
                request.protocol, headers.get(FORWARDED_PROTO), hops
            )
        only = self.only_addressed_to
        if only is not None and not hosts.addressed_here(request, only):
            return self.get_handler_delegate(request, hosts.ForbiddenHost)
        return super().find_handler(request, **kwargs)
