"""What the request of an open WebSocket no longer needs, let go of.

A WebSocket's Tornado handler lives as long as its socket (engine.io's environ keeps
it, python-socketio keeps the environ), and with it its ``HTTPServerRequest``, which
keeps, long after the upgrade:

- the HTTP/1 connection the stream was detached from, and through the request's
  ``server_connection`` the connection's finished request loop (its task, coroutine,
  futures and request context): about 1.2 KB, none of it used again;
- the request's headers (Tornado's ``HTTPHeaders``: two dicts and a list per header),
  which the environ has already copied (``HTTP_*``), and the handler's response
  headers, written with the 101: about 2 KB;
- the query string parsed into ``arguments`` (the environ keeps ``QUERY_STRING``);
- spent futures and the template namespace, in a handler attribute dict that grew
  for HTTP and stopped sharing its keys when Tornado added its WebSocket stubs.

``release`` drops them once engine.io serves the session on the WebSocket
(``accel/engine.py``). Of the headers it keeps what the app still reads, ``Upgrade``
(``transport.guarded``'s ``is_websocket``), in one read-only ``HTTPHeaders`` shared
by every such request; the other request attributes (method, URI, query, path, host,
protocol, ``remote_ip``...) stay as they are.

So code that runs once the socket is open, Socket.IO's ``connect`` included (for a
session opened on a WebSocket, it runs after the release), reads the request's headers,
cookies and query from the environ (``HTTP_*``, ``QUERY_STRING``), as engine.io and
python-socketio do, never from ``handler.request``: with FAST_FANOUT=false those would
still be there, with it on they are not.
"""

from __future__ import annotations

from typing import Any, NoReturn

import tornado.httputil
import tornado.websocket


class _FrozenHeaders(tornado.httputil.HTTPHeaders):
    """Headers nobody may change (one object shared by many requests)."""

    def _frozen(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("the headers of an open WebSocket's request are read-only")

    add = __setitem__ = __delitem__ = clear = update = setdefault = pop = popitem = _frozen


def _frozen_headers(**values: str) -> _FrozenHeaders:
    headers = tornado.httputil.HTTPHeaders(**values)
    headers.__class__ = _FrozenHeaders  # filled, then frozen
    return headers  # type: ignore[return-value]


# What an open WebSocket's request still answers for its headers.
UPGRADE_HEADERS = _frozen_headers(Upgrade="websocket")
NO_HEADERS = _frozen_headers()  # the response's, once its 101 is written


def release(handler: Any) -> None:
    """Drop what ``handler``'s request keeps for HTTP once it is an open WebSocket
    (status 101, stream detached); anything else is left as it is."""
    if not isinstance(handler, tornado.websocket.WebSocketHandler):
        return
    request = handler.request
    if handler.get_status() != 101 or handler.ws_connection is None:
        return
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return
    connection = request.connection
    if connection is not None and getattr(connection, "stream", None) is not None:
        return  # not detached: still Tornado's HTTP connection
    request.connection = None
    request.server_connection = None
    request.headers = UPGRADE_HEADERS
    request.arguments = {}
    request.query_arguments = {}
    request.body_arguments = {}
    handler._headers = NO_HEADERS
    # Spent: the future ``prepare`` resolved, the template namespace (``_break_cycles``
    # drops it at the close anyway).
    handler._prepared_future = None
    handler.ui = None  # type: ignore[assignment]
    request._body_future = None  # type: ignore[assignment]
    # The handler's attribute dict, grown for HTTP and no longer sharing its keys
    # (Tornado adds its WebSocket stubs after __init__), rebuilt at its size: ~0.8 KB.
    handler.__dict__ = {name: value for name, value in handler.__dict__.items()}
