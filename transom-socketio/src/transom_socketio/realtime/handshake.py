"""The Socket.IO ``connect`` handler: a one-time socket token or no connection.

The token comes from the handshake ``auth`` payload ``{"token": "..."}``
(preferred) or the query string ``?token=...`` (what transom clients send; the
access log redacts it). Any failure refuses the connection with the message
``INVALID_TOKEN``, which the client sees in ``connect_error``; the reason is
logged, never the token. An ``auth`` payload that also names a ``position``
starts the recovery of what the client missed (realtime/recovery.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import Any, NoReturn

import socketio
from pymongo.errors import PyMongoError

from ..auth.nonces import CHECKED_AT, SocketTokenStore, jwt_unexpired
from ..config import Settings
from ..metrics import Metrics
from ..ratelimit import RateLimiter, address_key
from . import eio_query
from .channels import ChannelManager, channel_room, granted
from .events import principal_of_session
from .inbound import MalformedConnect
from .presence import Presence
from .presence_events import PresenceEvents
from .recovery import Recovery, requested_position
from .rooms import (
    EVERYONE,
    NAMESPACE,
    counted_room,
    disconnect_local_sockets,
    jwt_room,
    sessions_ended_since,
    user_room,
)
from .session_expiry import SessionExpiry
from .sessions import LongPolls, PendingSessions

log = logging.getLogger(__name__)

INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - the refusal message, not a secret
# Sent after CONNECT to a socket that asked for channels back without a position (with
# one, the ``recovery`` event says it): ``{"channels": {"<name>": true | false}}``.
SUBSCRIPTIONS_EVENT = "subscriptions"


def token_from(auth: Any, environ: dict[str, Any]) -> object:
    """The token as sent: from ``auth`` if it is an object with a token, else the query
    (read as the transport read it: a repeated ``token`` never gets this far)."""
    if isinstance(auth, dict) and "token" in auth:
        return auth["token"]
    try:
        return eio_query.parse(environ.get("QUERY_STRING", "")).token
    except eio_query.AmbiguousQuery:
        return None


def client_address(environ: dict[str, Any]) -> str:
    """The client's address: the request's ``remote_ip``, which web/application.py sets
    (the right hop of X-Forwarded-For with TRUSTED_PROXY_HOPS)."""
    return environ["tornado.handler"].request.remote_ip or "unknown"


class SharedUser(dict[str, Any]):
    """A user's snapshot (``{"_id", "username", "groups"}``), one object for all their
    sockets on this process while it is the same (a socket's session keeps it for as
    long as the socket lives). Read-only: a change made through one socket's session
    would reach every other socket of the user (its ``groups`` stay the list the token
    holds, as without sharing: read it, never change it)."""

    __slots__ = ("__weakref__",)

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a socket's user snapshot is shared by the user's sockets: read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    update = setdefault = pop = popitem = clear = _read_only


class Handshake:
    """Consumes the token, binds the socket to its user, joins the user's rooms."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        nonces: SocketTokenStore,
        settings: Settings,
        metrics: Metrics,
        presence: Presence,
        recovery: Recovery | None,
    ) -> None:
        self._sio = sio
        self.presence = presence
        self.presence_events = PresenceEvents(
            sio,
            presence,
            settings.presence_grace_seconds,
            settings.presence_announcements_per_minute_per_user,
            announce=settings.presence_events,
        )
        self.recovery = recovery
        # The app's channels (realtime/channels.py), once Services.create binds them.
        self.channels: ChannelManager | None = None
        self._nonces = nonces
        self._settings = settings
        self._metrics = metrics
        self._per_address = RateLimiter(settings.handshakes_per_minute_per_address)
        self._expiry = SessionExpiry(
            lambda jti: disconnect_local_sockets(sio.manager, jwt_room(jti), NAMESPACE)
        )
        self.long_polls = LongPolls()
        self.pending = PendingSessions(
            settings.socketio_connect_timeout_seconds, settings.socketio_max_pending_per_address
        )
        self._telling: set[asyncio.Task[None]] = set()
        # user id -> the snapshot their connected sockets share (gone with the last).
        self._users: weakref.WeakValueDictionary[str, SharedUser] = weakref.WeakValueDictionary()

    def _shared_user(self, user_id: str, user: dict[str, Any]) -> dict[str, Any]:
        """The snapshot ``user`` as the one object the user's other sockets hold, if
        they hold the same; else it becomes that object."""
        shared = self._users.get(user_id)
        if shared is None or shared != user:
            shared = self._users[user_id] = SharedUser(user)
        return shared

    def refuse(self, reason: str, detail: str = "") -> socketio.exceptions.ConnectionRefusedError:
        log.info("socket handshake refused: %s%s", reason, detail)
        self._metrics.handshakes.labels("refused", reason).inc()
        return socketio.exceptions.ConnectionRefusedError(INVALID_TOKEN)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        address = client_address(environ)
        if self._per_address.hit(address_key(address)) is not None:
            raise self.refuse("rate_limited", f" (address {address})")
        if isinstance(auth, MalformedConnect):
            raise self.refuse("malformed_packet", f" ({auth.reason})")
        token = token_from(auth, environ)
        if token is None:
            raise self.refuse("no_token")
        try:
            grant = await self._nonces.consume(token)
        except PyMongoError:
            log.warning("socket handshake refused: database unavailable")
            self._metrics.handshakes.labels("refused", "database_unavailable").inc()
            raise socketio.exceptions.ConnectionRefusedError("SERVICE_UNAVAILABLE") from None
        if grant is None:
            raise self.refuse("invalid_token", " (unknown, expired, used or malformed)")
        user_id = str(grant["user"]["_id"])
        user = self._shared_user(user_id, grant["user"])
        open_sockets = await self._open_sockets(user_id)
        if open_sockets >= self._settings.max_sockets_per_user:
            raise self.refuse("too_many_sockets", f" (user {user_id} has {open_sockets})")
        self._refuse_if_closed(sid)
        # Counted from here on, with no await since the count: a concurrent handshake
        # of this user on this process sees this one.
        self._sio.manager.basic_enter_room(sid, NAMESPACE, counted_room(user_id))
        # What a client event's handler gets as its ``Principal`` (realtime/events.py).
        session = {"user": user, "jti": grant["jti"], "exp": grant["exp"]}
        await self._sio.save_session(sid, session)
        if self.recovery is not None:
            await self.recovery.history.start()  # delivers the message client's emits
        # The channels it asks back (auth["channels"]), authorised again: held for the
        # replay with the user's rooms, joined as the handshake ends.
        verdicts = await self._channels_back(session, auth)
        self._refuse_if_closed(sid)
        rooms = self._rooms_of(user_id, granted(verdicts))
        recovery_from = self._hold_for_recovery(sid, auth, rooms)
        try:
            await self._admit(sid, environ, user, grant, session, granted(verdicts))
        except BaseException:  # refused, or failed: a held socket must not stay held
            if self.recovery is not None and recovery_from is not None:
                self.recovery.cancel(sid)
            raise
        if self.recovery is not None and recovery_from is not None:
            summary = {} if verdicts is None else {"channels": verdicts}
            self.recovery.replay_after_connect(sid, recovery_from, rooms, user_id, summary)
        elif verdicts is not None:
            self._tell_after_connect(sid, SUBSCRIPTIONS_EVENT, {"channels": verdicts})

    def _refuse_if_closed(self, sid: str) -> None:
        """Refuse the handshake if its engine.io session closed while it waited (a
        long-polling client's CLOSE, or its timeout, can come in another request).

        python-socketio runs no disconnect handler for a socket whose CONNECT is not
        done, and forgets the session's environ: whatever this handshake did after that
        would stay (the socket counted against its user, in its rooms, present), with
        no session to end it. Refused, python-socketio takes the socket out of its
        rooms."""
        if self._session_closed(sid):
            raise self.refuse("closed", " (its session closed during the handshake)")

    def _session_closed(self, sid: str) -> bool:
        return self._sio.get_environ(sid, NAMESPACE) is None

    def _tell_after_connect(self, sid: str, event: str, data: Any) -> None:
        """Emit to the socket once its CONNECT is on its way (python-socketio sends it when
        ``connect`` returns; a task runs after that)."""
        task = asyncio.ensure_future(self._sio.emit(event, data, to=sid, namespace=NAMESPACE))
        self._telling.add(task)
        task.add_done_callback(functools.partial(self._told, event))

    def _told(self, event: str, task: asyncio.Future[Any]) -> None:
        self._telling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = type(task.exception()).__name__
            log.error("a socket's %r event after its handshake was not sent (%s)", event, error)

    async def _channels_back(self, session: dict[str, Any], auth: Any) -> dict[str, bool] | None:
        if self.channels is None or not isinstance(auth, dict):
            return None
        return await self.channels.authorized(principal_of_session(session), auth.get("channels"))

    async def _admit(
        self,
        sid: str,
        environ: dict[str, Any],
        user: dict[str, Any],
        grant: dict[str, Any],
        session: dict[str, Any],
        channels: list[str],
    ) -> None:
        """Join the socket's rooms and settle its session; refuse it if its JWT ended."""
        user_id = str(user["_id"])
        for room in (user_room(user_id), jwt_room(grant["jti"])):
            await self._sio.enter_room(sid, room)
        # Checked once the socket is in its JWT's room: a logout whose revocation this
        # check misses disconnects that room after it, and finds the socket there (the
        # manager then ends it when its handshake does: refused here, or disconnected
        # as it connects; realtime/rooms.py).
        live = await self._session_holds(grant, user_id)
        if not live or self._sio.manager.ended_in_handshake(sid, NAMESPACE):
            raise self.refuse("session_ended", " (its JWT has expired or was revoked)")
        self._expiry.watch(grant["jti"], grant["exp"])
        # The handshake request's body reader (a class engine.io defines per request) is
        # spent; the environ lives as long as the socket, so let it go.
        environ.pop("wsgi.input", None)
        self.pending.settled(environ["tornado.handler"].pending_key)
        self._metrics.handshakes.labels("accepted", "").inc()
        self._metrics.connected_sockets.inc()
        await self.presence_events.connected(user, skip_sid=sid)
        if channels and self.channels is not None:
            await self.channels.attach(sid, principal_of_session(session), channels)
        # Last, with no await after it (nor in connect): a broadcast (emitToEveryone, a
        # ``presence`` event) must not reach a socket before the client has its CONNECT.
        await self._sio.enter_room(sid, EVERYONE)
        if self._session_closed(sid):
            await self._release(sid, session)  # what the lines above did, as it closed
        self._refuse_if_closed(sid)

    async def _open_sockets(self, user_id: str) -> int:
        """The user's sockets: those of the other processes (the presence store's
        count), and this process's, handshakes past this check included."""
        elsewhere = await self.presence.sockets_elsewhere(user_id)
        return self._sio.manager.room_size(NAMESPACE, counted_room(user_id)) + (elsewhere or 0)

    def _hold_for_recovery(self, sid: str, auth: Any, rooms: tuple[str, ...]) -> str | None:
        """If the socket asks to recover, hold its deliveries (before it joins its
        rooms) and return the position it recovers from."""
        position = requested_position(auth)
        if self.recovery is None or position is None:
            return None
        self.recovery.hold(sid, rooms, position)
        return position

    @staticmethod
    def _rooms_of(user_id: str, channels: list[str]) -> tuple[str, ...]:
        """The rooms the message client emits to that a user's socket is in."""
        return (user_room(user_id), EVERYONE, *(channel_room(c) for c in channels))

    async def _session_holds(self, grant: dict[str, Any], user_id: str) -> bool:
        """Whether the JWT that minted the token still holds (not expired, not revoked):
        known here if it can be, else read from the database."""
        live = self._live_without_a_read(grant, user_id)
        return live if live is not None else await self._session_is_live(grant)

    def _live_without_a_read(self, grant: dict[str, Any], user_id: str) -> bool | None:
        """Whether the token's JWT still holds, when that is known without the database:
        the token was issued here, after a revocation check at ``CHECKED_AT``, and every
        end of a room is recorded here (sockets in this process only). A logout, or an
        end of the user's sessions, that the check did not see ends the JWT's or the
        user's room after it, here (accounts.py), so the rooms tell. None otherwise."""
        checked_at = grant.get(CHECKED_AT)
        if not isinstance(checked_at, float):
            return None
        ended = sessions_ended_since(self._sio.manager, user_id, grant["jti"], checked_at)
        if ended is None:
            return None
        return not ended and jwt_unexpired(grant)

    async def _session_is_live(self, grant: dict[str, Any]) -> bool:
        try:
            return await self._nonces.session_is_live(grant)
        except PyMongoError:
            log.warning("socket handshake refused: database unavailable")
            self._metrics.handshakes.labels("refused", "database_unavailable").inc()
            raise socketio.exceptions.ConnectionRefusedError("SERVICE_UNAVAILABLE") from None

    async def disconnect(self, sid: str, reason: str | None = None) -> None:
        await self._release(sid, await self._sio.get_session(sid))

    async def _release(self, sid: str, session: dict[str, Any]) -> None:
        """What a connected socket's end undoes of its handshake (``_admit``)."""
        if self.recovery is not None:
            self.recovery.stop(sid)
        self._metrics.connected_sockets.dec()
        await self.presence_events.disconnected(session["user"])
        if self.channels is not None:
            await self.channels.socket_gone(sid, principal_of_session(session))

    async def close(self) -> None:
        """Stop what outlives a socket (the presence grace periods); at app stop."""
        await self.presence_events.close()
