"""Events that clients send: declared one by one, checked, rate limited, acknowledged.

An app handles no client event unless it declares it here; anything else a client
emits is dropped, as before (realtime/inbound.py refuses what may not even reach
python-socketio). A declaration names the event, the pydantic model its one argument
must pass, and how often one socket may send it::

    events = ClientEvents()

    class Typing(BaseModel):
        model_config = ConfigDict(extra="forbid")
        to: str = Field(pattern="^[0-9a-f]{24}$")

    @events.on("typing", body=Typing, per_socket_per_minute=30)
    async def typing(socket: ClientSocket, body: Typing) -> dict[str, bool]:
        await socket.services.message_client.emitToUsers(
            body.to, "typing", {"from": socket.user.user_id}, ephemeral=True
        )
        return {"ok": True}

    services = Services.create(settings, client, client_events=events)

The handler runs only for an authenticated socket (python-socketio dispatches events
of connected sockets only, and a socket connects only through the handshake). It gets
a ``ClientSocket`` (``sid``, ``user``: the ``Principal`` of the JWT the socket was
opened with, ``services``) and the validated body. When the client asked for an
acknowledgement (``socket.emit("typing", body, callback)``), the ack carries:

- what the handler returned (a pydantic model is sent as its JSON dump, a tuple as
  several arguments, None as no argument);
- ``{"error": {"code": "validation_error", "message", "field"}}`` for a body the model
  refuses (the HTTP API's shape and wording, ``shapes.explain``), or for anything but
  exactly one argument; the handler is not called;
- ``{"error": {"code": "rate_limited", "message", "retry_after"}}`` past the socket's
  budget for this event (``per_socket_per_minute``, in bursts of up to half that, as
  every in-process limit: ``ratelimit.RateLimiter``); the body is not even checked;
- ``{"error": {"code": "internal_error", "message"}}`` when the handler raised: one
  ERROR line names the event, the user, the exception's type and where it was raised,
  never the body nor the exception's message (which may repeat the body).

The costs a client can cause stay bounded: each packet counts against the session's
inbound budget before it is decoded (SOCKETIO_INBOUND_PACKETS_PER_SECOND), each
declared event against its per-socket limit before its body is validated, and a body
is at most SOCKETIO_MAX_MESSAGE_BYTES. Limits are per process, like the other
in-process ones (a socket lives on one process).
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from .. import logs
from ..auth.tokens import Principal
from ..ratelimit import RateLimiter
from ..shapes import explain
from ..web.errors import INTERNAL_ERROR, Error
from .inbound import RESERVED_EVENTS
from .rooms import DISCONNECT_ROOM_EVENT, NAMESPACE

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["RESERVED_NAMES", "ClientEvents", "ClientSocket"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

MAX_EVENT_NAME = 64
# Names a client event may not take: Socket.IO's own (the transport refuses them), the
# one the room manager uses between processes, and the channels' own.
SUBSCRIBE, UNSUBSCRIBE = "subscribe", "unsubscribe"  # realtime/channels.py's events
RESERVED_NAMES = RESERVED_EVENTS | {DISCONNECT_ROOM_EVENT, SUBSCRIBE, UNSUBSCRIBE}

VALIDATION_ERROR = "validation_error"
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class ClientSocket:
    """The socket that sent an event: its Socket.IO ``sid``, its user (the ``Principal``
    of the JWT it was opened with, as ``current_user`` in an HTTP handler), and the app's
    ``services`` (``services.message_client``...)."""

    sid: str
    user: Principal
    services: Services


Handler = Callable[[ClientSocket, M], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Declaration:
    """One declared event: its name, body model, per-socket limit and handler."""

    name: str
    body: type[BaseModel]
    per_socket_per_minute: int
    handler: Callable[[ClientSocket, Any], Awaitable[Any]]


class ClientEvents:
    """The events an app accepts from its clients, declared with ``on``.

    Only declarations: an instance may serve several apps (tests build many); each
    socket server gets its own rate limits when ``Services.create`` binds it.
    """

    def __init__(self) -> None:
        self._declared: dict[str, Declaration] = {}

    def on(
        self, name: str, *, body: type[M], per_socket_per_minute: int = 60
    ) -> Callable[[Handler[M]], Handler[M]]:
        """Declare event ``name``: its one argument must pass ``body`` (a pydantic model),
        and one socket may send it ``per_socket_per_minute`` times a minute (0: no
        limit). The decorated coroutine function handles it; it is returned unchanged.

        Raises ValueError for a reserved or malformed name, or one declared already,
        TypeError for a ``body`` that is not a pydantic model."""
        check_name(name)
        if name in self._declared:
            raise ValueError(f"client event {name!r} is declared already")
        if not (isinstance(body, type) and issubclass(body, BaseModel)):
            raise TypeError("body must be a pydantic model class")
        if isinstance(per_socket_per_minute, bool) or not (
            isinstance(per_socket_per_minute, int) and per_socket_per_minute >= 0
        ):
            raise ValueError("per_socket_per_minute must be an integer >= 0 (0: no limit)")

        def declare(handler: Handler[M]) -> Handler[M]:
            self._declared[name] = Declaration(name, body, per_socket_per_minute, handler)
            return handler

        return declare

    @property
    def names(self) -> frozenset[str]:
        """The declared event names."""
        return frozenset(self._declared)

    def bind(self, sio: socketio.AsyncServer, services: Services) -> None:
        """Handle the declared events on ``sio`` (``Services.create`` calls it)."""
        for declaration in self._declared.values():
            endpoint = EventEndpoint(declaration, sio, services)
            sio.on(declaration.name, endpoint.handle, NAMESPACE)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_EVENT_NAME:
        raise ValueError(f"a client event name is a string of 1 to {MAX_EVENT_NAME} characters")
    if name in RESERVED_NAMES or not name.isprintable():
        raise ValueError(f"{name!r} is reserved, or not a printable name")
    return name


def error_ack(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An acknowledgement that reports an error, in the HTTP API's shape."""
    return Error.body(code, message, **details)


class EventEndpoint:
    """One declared event on one socket server: python-socketio calls ``handle`` with the
    sid and the arguments the client sent; what it returns is the acknowledgement."""

    def __init__(
        self, declaration: Declaration, sio: socketio.AsyncServer, services: Services
    ) -> None:
        self._declaration = declaration
        self._sio = sio
        self._services = services
        # Per socket (its sid): forgotten least recently used first, past 100,000.
        self._limit = RateLimiter(declaration.per_socket_per_minute)

    async def handle(self, sid: str, *args: Any) -> Any:
        name = self._declaration.name
        wait = self._limit.hit(sid)
        if wait is not None:
            log.debug("client event %r refused: rate limited", name)
            return error_ack(
                RATE_LIMITED, f"too many {name!r} events, retry later", retry_after=wait
            )
        if len(args) != 1:
            return error_ack(VALIDATION_ERROR, "the event takes exactly one argument")
        try:
            body = self._declaration.body.model_validate(args[0])
        except ValidationError as error:
            message, field = explain(error)
            log.debug("client event %r refused: %s", name, message)
            details = {"field": field} if field else {}
            return error_ack(VALIDATION_ERROR, message, **details)
        socket = await self._socket(sid)
        if socket is None:  # disconnected meanwhile
            return None
        logs.bind_user(socket.user.user_id)  # this event's own task: its log lines
        try:
            result = await self._declaration.handler(socket, body)
        except Exception as error:
            log.error(
                "client event %r failed (user %s): %s, raised at\n%s",
                name,
                socket.user.user_id,
                type(error).__qualname__,
                "".join(traceback.format_tb(error.__traceback__)).rstrip(),
            )
            return error_ack(*INTERNAL_ERROR)
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result

    async def _socket(self, sid: str) -> ClientSocket | None:
        try:
            session = await self._sio.get_session(sid, namespace=NAMESPACE)
        except KeyError:
            return None
        if session.get("user") is None:
            return None
        return ClientSocket(sid, principal_of_session(session), self._services)


def principal_of_session(session: dict[str, Any]) -> Principal:
    """The ``Principal`` of a connected socket's session (what its handshake saved)."""
    user = session["user"]
    return Principal(
        user_id=str(user["_id"]),
        username=user.get("username"),
        groups=tuple(user.get("groups") or ()),
        jti=session["jti"],
        expires_at=dt.datetime.fromtimestamp(session.get("exp", 0), dt.UTC),
    )
