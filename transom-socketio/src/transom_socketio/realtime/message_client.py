"""The message client: ``registry['transomMsgClient']``.

Server code anywhere (handlers, model actions, background jobs) pushes events to
users through it::

    msg = registry["transomMsgClient"]
    await msg.emitToUsers([doc["to"], ctx.user], "message", payload)
    await msg.emitToEveryone("announcement", {"text": "..."})

Users are addressed by room (``user:<id>``), so an emit costs one call whatever
the number of sockets, and no socket list is scanned. The camelCase names match
the transom JavaScript plugins; snake_case aliases are provided.

With RECOVERY_ENABLED (the default) every emit is kept in the message history
and each socket receives, after the payload, a trailing ``{"position": "..."}``
argument: a client that reconnects with the last position it received gets what
it missed (realtime/recovery.py, the README's "Recovering missed messages"). An emit
may name a ``key`` for what it carries (``key="message:<id>"``): ``retract(key)`` and
``replace(key, data)`` then change what a later recovery replays of it.

An emit with ``ephemeral=True`` (a typing indicator, a cursor) is delivered to the
sockets connected now and kept nowhere: no position, no replay after a reconnect. It
travels the room manager's way (Redis pub/sub with REDIS_URL, so it reaches every
process's sockets), not the history's stream, so it is not ordered with recorded emits.

``socket_counts(users)`` and ``online_counts()`` count sockets and users across every
process (the presence store's counts), where ``io.manager.room_size`` sees only this
process's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import socketio
from bson import ObjectId

from ..metrics import Metrics
from .channels import ChannelRefused, Channels, channel_room
from .history import RETRACTED, History, arguments, check_key
from .presence import OnlineCounts, Presence
from .rooms import EVERYONE, NAMESPACE, RoomManager, jwt_room, user_room

__all__ = ["MessageClient"]


def user_id_of(user: Any) -> str:
    """The id of one user given as a dict, an object, an ObjectId or a 24-hex string."""
    if user is None:
        raise TypeError("user must not be None")
    if isinstance(user, dict):
        value = user.get("_id", user.get("id"))
    elif isinstance(user, str | ObjectId):
        value = user
    else:
        value = getattr(user, "_id", None) or getattr(user, "id", None)
        if value is None:
            value = getattr(user, "user_id", None)
    if value is None:
        raise ValueError(f"cannot find a user id (_id or id) in {type(user).__name__}")
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, str) and ObjectId.is_valid(value):
        return value.lower()
    raise ValueError(f"{value!r} is not a user id (a 24-digit hex string or ObjectId)")


def user_ids_of(users: Any) -> list[str]:
    """One user or an iterable of users → distinct ids, in first-seen order."""
    if isinstance(users, str | ObjectId | dict) or not isinstance(users, Iterable):
        users = [users]
    return list(dict.fromkeys(user_id_of(user) for user in users))


def _check_key(key: str | None, ephemeral: bool) -> str | None:
    if key is None:
        return None
    if ephemeral:
        raise ValueError("an ephemeral emit is not recorded: it takes no key")
    return check_key(key)


def _check_channel(channel: object) -> str:
    if not isinstance(channel, str) or not channel:
        raise ValueError("channelName must be a non-empty string")
    return channel


class MessageClient:
    def __init__(
        self,
        io: socketio.AsyncServer,
        metrics: Metrics,
        presence: Presence,
        history: History | None = None,
    ) -> None:
        self._io = io
        self._metrics = metrics
        self._presence = presence
        self._history = history  # None: RECOVERY_ENABLED=false
        # The app's channel patterns (realtime/channels.py), once Services.create has them.
        self.channels: Channels | None = None

    @property
    def io(self) -> socketio.AsyncServer:
        """The underlying ``socketio.AsyncServer`` (read-only)."""
        return self._io

    @property
    def _manager(self) -> RoomManager:
        return self._io.manager

    async def emitToUsers(
        self,
        users: Any,
        channelName: str,
        data: Any = None,
        *,
        key: str | None = None,
        ephemeral: bool = False,
    ) -> int:
        """Send event ``channelName`` with ``data`` to every socket of each user.

        ``users`` is one user or a list (dicts or objects with ``_id``/``id``, id
        strings, ObjectIds); duplicates collapse and users without a socket are
        skipped. Returns the number of distinct users targeted. ``key`` names what
        ``data`` is (``"message:<id>"``), for ``retract`` and ``replace``.
        ``ephemeral``: delivered live only, never recorded for recovery (no position,
        no ``key``).
        """
        channel = _check_channel(channelName)
        ids = user_ids_of(users)
        key = _check_key(key, ephemeral)
        self._metrics.emits.labels("users").inc()
        self._metrics.emit_recipients.labels("users").inc(len(ids))
        if ids:
            await self._send(channel, data, [user_room(uid) for uid in ids], key, ephemeral)
        return len(ids)

    async def emitToEveryone(
        self,
        channelName: str,
        data: Any = None,
        *,
        key: str | None = None,
        ephemeral: bool = False,
    ) -> None:
        """Send event ``channelName`` with ``data`` to every authenticated socket
        (``ephemeral``: live only, as for ``emitToUsers``)."""
        channel = _check_channel(channelName)
        key = _check_key(key, ephemeral)
        local_sockets = self._manager.room_size(NAMESPACE, EVERYONE)
        self._metrics.emits.labels("everyone").inc()
        self._metrics.emit_recipients.labels("everyone").inc(local_sockets)
        await self._send(channel, data, [EVERYONE], key, ephemeral)

    async def emitToChannel(
        self,
        channel: str,
        event: str,
        data: Any = None,
        *,
        key: str | None = None,
        ephemeral: bool = False,
    ) -> None:
        """Send ``event`` with ``data`` to every socket subscribed to ``channel``, on
        every process, recorded for recovery (unless ``ephemeral``) like ``emitToUsers``.
        ValueError for a name that is not a channel of a declared pattern."""
        if self.channels is None:
            raise ValueError("this app declares no channels (Services.create(channels=...))")
        try:
            self.channels.parse(channel)
        except ChannelRefused as refused:
            raise ValueError(f"{channel!r}: {refused.message}") from None
        name = _check_channel(event)
        key = _check_key(key, ephemeral)
        self._metrics.emits.labels("channel").inc()
        self._metrics.emit_recipients.labels("channel").inc(
            self._manager.room_size(NAMESPACE, channel_room(channel))
        )
        await self._send(name, data, [channel_room(channel)], key, ephemeral)

    async def _send(
        self, channel: str, data: Any, rooms: list[str], key: str | None, ephemeral: bool
    ) -> None:
        if self._history is None or ephemeral:
            # The room manager's way: this process's sockets now, the others' through
            # Redis pub/sub (with REDIS_URL); a socket held for its replay gets it after.
            await self._io.emit(channel, data, to=rooms, namespace=NAMESPACE)
        else:
            await self._history.emit(channel, arguments(data), rooms, key)

    async def retract(self, key: str) -> None:
        """Sockets that recover from now on do not receive what was emitted with ``key``
        (a deleted message). Sockets that received it keep it: tell them yourself."""
        key = check_key(key)
        if self._history is not None:
            await self._history.edit(key, RETRACTED)

    async def replace(self, key: str, data: Any = None) -> None:
        """Sockets that recover from now on receive ``data`` instead of what was emitted
        with ``key`` (an edited message), under the same event and position."""
        key = check_key(key)
        if self._history is not None:
            await self._history.edit(key, arguments(data))

    async def position(self) -> str | None:
        """The newest position (None with recovery off): what a client that has received
        nothing yet recovers from, so nothing emitted after this call is lost to it."""
        return None if self._history is None else await self._history.head()

    async def start(self) -> None:
        """Start delivering (the history's stream reader); the app's start-up calls it."""
        if self._history is not None:
            await self._history.start()

    async def disconnectUsers(self, users: Any) -> int:
        """Disconnect every socket of each user; returns the number of distinct users."""
        ids = user_ids_of(users)
        for uid in ids:
            await self._manager.disconnect_room(user_room(uid))
        return len(ids)

    async def disconnect_token(self, jti: str) -> None:
        """Disconnect the sockets opened with the JWT whose id is ``jti`` (logout)."""
        await self._manager.disconnect_room(jwt_room(jti))

    async def presence(self, users: Any) -> dict[str, dict[str, Any]]:
        """Which of ``users`` are online, and with how many sockets, across every process.

        ``users`` takes the forms ``emitToUsers`` takes. Returns
        ``{user_id: {"online": bool, "sockets": n}}`` for each distinct user.
        The sockets of a process that stopped without closing them stop counting
        within ``3 x PRESENCE_HEARTBEAT_SECONDS``.
        """
        counts = await self._presence.counts(user_ids_of(users))
        return {uid: {"online": n > 0, "sockets": n} for uid, n in counts.items()}

    async def socket_counts(self, users: Any) -> dict[str, int]:
        """How many sockets each of ``users`` has open, across every process.

        ``users`` takes the forms ``emitToUsers`` takes; returns ``{user_id: n}`` for
        each distinct user (0: offline). A socket counts once its handshake is accepted,
        until it disconnects; a process that stopped without closing its sockets stops
        counting within ``3 x PRESENCE_HEARTBEAT_SECONDS``. With REDIS_URL, one round
        trip; raises ``redis.RedisError`` when Redis does not answer.
        """
        return await self._presence.counts(user_ids_of(users))

    async def online_counts(self) -> OnlineCounts:
        """How many users are online (with at least one socket) and how many sockets
        they hold, across every process (the same counts as ``socket_counts``).

        Without REDIS_URL, a dict's size; with it, one Lua script that reads the users
        of each live process: its cost grows with the number of online users, so call
        it for a dashboard or a metric, not once per message. Raises
        ``redis.RedisError`` when Redis does not answer.
        """
        return await self._presence.online()

    async def close(self) -> None:
        """Release what presence and the history hold (tasks and connections, if any)."""
        await self._presence.close()
        if self._history is not None:
            await self._history.close()

    emit_to_channel = emitToChannel
    presenceOf = presence
    socketCounts = socket_counts
    onlineCounts = online_counts
    emit_to_users = emitToUsers
    emit_to_everyone = emitToEveryone
    disconnect_users = disconnectUsers
