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

import asyncio
from collections.abc import Iterable
from typing import Any, cast

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
    return list(dict.fromkeys(user_id_of(user) for user in _users_list(users)))


def _users_list(users: Any) -> Iterable[Any]:
    if type(users) is list:
        return users
    if isinstance(users, str | ObjectId | dict) or not isinstance(users, Iterable):
        return [users]
    return users


# Id strings already checked, and their room: checking an id (``user_id_of``) costs more
# than the rest of what one recipient costs an emit. Bounded: emptied when full.
KNOWN_USER_ROOMS = 4096
# Channel names already checked (``Channels.parse``), and their room; bounded likewise.
KNOWN_CHANNEL_ROOMS = 1024


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
        self._user_rooms: dict[str, str] = {}  # id string as given -> its user room
        # Valid channel names -> their room, for ``_channels_checked`` (patterns are only
        # ever added, so a name once valid stays valid for the same Channels).
        self._channel_rooms: dict[str, str] = {}
        self._channels_checked: Channels | None = None
        # Emits and recipients counted since the last ``_publish_counts``, by kind: a
        # burst of emits adds to the Prometheus counters once, at the end of its pass.
        self._counts: dict[str, list[int]] = {}

    def _count(self, kind: str, recipients: int) -> None:
        counts = self._counts
        if not counts:
            asyncio.get_running_loop().call_soon(self._publish_counts)
        pending = counts.get(kind)
        if pending is None:
            counts[kind] = [1, recipients]
        else:
            pending[0] += 1
            pending[1] += recipients

    def _publish_counts(self) -> None:
        counts, self._counts = self._counts, {}
        for kind, (emits, recipients) in counts.items():
            self._metrics.emits.labels(kind).inc(emits)
            self._metrics.emit_recipients.labels(kind).inc(recipients)

    def _user_rooms_of(self, users: Any) -> list[str]:
        """The rooms of the distinct users of ``users`` (forms as ``user_ids_of``), in
        first-seen order."""
        known = self._user_rooms
        if type(users) is list:
            try:  # every one an id string seen before: all in C
                found = dict.fromkeys(map(known.get, users))
            except TypeError:  # an unhashable user (a dict): the loop below
                pass
            else:
                if None not in found:
                    return cast(list[str], list(found))
        rooms: dict[str, None] = {}
        for user in _users_list(users):
            if type(user) is str:
                room = known.get(user)
                if room is None:
                    room = user_room(user_id_of(user))
                    if len(known) >= KNOWN_USER_ROOMS:
                        known.clear()
                    known[user] = room
            else:
                room = user_room(user_id_of(user))
            rooms[room] = None
        return list(rooms)

    def _channel_room(self, channel: str) -> str:
        """The room of ``channel``; ValueError for a name that is not a channel of a
        declared pattern."""
        channels = self.channels
        if channels is None:
            raise ValueError("this app declares no channels (Services.create(channels=...))")
        if channels is not self._channels_checked:
            self._channel_rooms = {}
            self._channels_checked = channels
        room = self._channel_rooms.get(channel) if type(channel) is str else None
        if room is None:
            try:
                channels.parse(channel)
            except ChannelRefused as refused:
                raise ValueError(f"{channel!r}: {refused.message}") from None
            room = channel_room(channel)
            if len(self._channel_rooms) >= KNOWN_CHANNEL_ROOMS:
                self._channel_rooms.clear()
            self._channel_rooms[channel] = room
        return room

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
        rooms = self._user_rooms_of(users)
        key = _check_key(key, ephemeral)
        self._count("users", len(rooms))
        if rooms:
            await self._send(channel, data, rooms, key, ephemeral)
        return len(rooms)

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
        self._count("everyone", self._manager.room_size(NAMESPACE, EVERYONE))
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
        room = self._channel_room(channel)
        name = _check_channel(event)
        key = _check_key(key, ephemeral)
        self._count("channel", self._manager.room_size(NAMESPACE, room))
        await self._send(name, data, [room], key, ephemeral)

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
        (a deleted message). Sockets that received it keep it: tell them yourself. It is
        final: a ``replace`` of the key after it changes nothing."""
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
