"""Channels: named rooms that clients subscribe to, if the app says they may.

An app declares its channel patterns, each with the rule of who may subscribe, and
whether the channel keeps presence::

    channels = Channels()
    channels.declare("room", SIGNED_IN, presence=True)  # join_leave_limit=100
    channels.declare("group", GROUP_MEMBERS)

    services = Services.create(settings, client, channels=channels)

A rule is data (``ChannelRule``): ``SIGNED_IN`` (any signed-in user), ``GROUP_MEMBERS``
(the channel's name is one of the user's groups), ``USER_ITSELF`` (the name is the
user's id), ``members_of(group)`` (every channel of the pattern, for that group's
members). From one rule the engine derives both the check on a subscription and, with
``channels.readable_query(user)``, the database condition on a document's channel that
lists what the user may read (the messages of the channels they may subscribe to):
each rule is stated once. A pattern may instead decide with a function of its own::

    @channels.pattern("team", readable=team_channels)
    def team_members(user: Principal, name: str) -> bool:  # sync or async
        return ...

``readable`` (optional) gives that pattern's condition on the channel field, a
function of the user and the prefix; without it, the pattern's documents are never in
``readable_query`` (deny by default), since the engine cannot turn a function into a
query. A condition takes channel names as exact strings (``$in``) or an anchored,
``re.escape``-d prefix, never a client's text as a pattern.

A channel is ``<pattern>:<name>`` (``room:lobby``, ``group:admin``): the pattern a
lower-case word, the name 1 to 100 letters, digits and ``_ . ~ -``. Anything else, and
a name of no declared pattern, is refused before any function is called.

Clients send ``subscribe`` ``{"channel": "room:lobby"}`` and ``unsubscribe``
``{"channel"}`` with an acknowledgement: ``{"ok": true}``, or ``{"ok": false, "error":
{"code", "message"}}`` with the code ``invalid_channel``, ``forbidden``,
``too_many_subscriptions``, ``rate_limited`` or ``unavailable`` (the pattern's function
raised: a database it reads failed, say; logged with its traceback). The message client's
``emitToChannel(channel, event, data)`` reaches every subscribed socket on every
process, recorded for recovery like the other emits. A socket that reconnects with
``auth = {"token", "position", "channels": [...]}`` gets those subscriptions back,
authorised again, before its replay, which then includes their messages; the
``recovery`` event says which came back (``"channels": {"room:lobby": true}``).

In a presence channel, subscribers are sent ``join`` and ``leave`` ``{"channel",
"user": {"_id", "username", "display_name"}}`` when a user's first socket subscribes
or, after PRESENCE_GRACE_SECONDS, their last one leaves; nobody else is.
``GET /api/v1/channels/<channel>/presence`` lists the members (web/channels.py).

Join and leave cost a delivery to every subscriber (500,000 for 1,000 members coming
and going), so they stop in a channel with more than its pattern's
``join_leave_limit`` members (100 by default, as Pusher caps presence channels;
``None``: no limit), counted on every process, and resume once it is down to a tenth
below the limit (``channel_presence.resume_at``). A client knows which from:

- the ``subscribe`` acknowledgement of a presence channel, ``{"ok": true, "presence":
  {"join_leave": true | false, "members": <n> | null}}`` (``null`` and ``false`` when
  the presence store, or the database for the member's fields, failed: the socket is
  subscribed but not counted among the members, and its going takes nothing from the
  user's other sockets; subscribing again counts it);
- a ``channel_presence`` event ``{"channel", "join_leave", "members"}`` sent to the
  channel's subscribers (and nobody else) each time the mode switches: on ``false``,
  stop trusting the member list built from join and leave (poll the presence
  endpoint instead); on ``true``, fetch the list once and apply join and leave again;
- the presence endpoint, which says ``"join_leave"`` too (a socket whose
  subscriptions were restored at reconnection reads it there: it missed join and leave
  while away anyway).

Join and leave received while the mode is off are to be ignored (from several
processes, one may arrive just after the switch).

A user who loses the right to a channel loses it with their session: a change of
groups or a logout ends the user's sockets (auth/revocations.py), and a socket that
comes back is authorised again. A rule that reads the app's own data is checked only
then too (on subscription and on reconnection): when that data takes a right away, the
app ends the users' sockets (``disconnectUsers``) and they come back through the rule.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import socketio
from pymongo.errors import PyMongoError

from ..auth.tokens import Principal
from ..ratelimit import RateLimiter
from ..web.errors import Error
from .channel_presence import STORE_ERRORS, ChannelPresence, JoinLeave
from .events import SUBSCRIBE, UNSUBSCRIBE, principal_of_session
from .grace import Grace
from .rooms import NAMESPACE

if TYPE_CHECKING:
    from ..services import Services

__all__ = [
    "CHANNEL_PRESENCE",
    "CHANNEL_RULE",
    "DEFAULT_JOIN_LEAVE_LIMIT",
    "GROUP_MEMBERS",
    "SIGNED_IN",
    "USER_ITSELF",
    "ChannelRefused",
    "ChannelRule",
    "Channels",
    "channel_room",
    "members_of",
]

log = logging.getLogger(__name__)

NAME = r"[A-Za-z0-9_.~-]{1,100}"  # a channel's name, after its pattern's prefix
CHANNEL_RULE = re.compile(rf"^([a-z][a-z0-9_-]{{0,31}}):({NAME})$")
PATTERN_RULE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_CHANNEL_LENGTH = 133


def is_channel_name(channel: object) -> bool:
    """Whether ``channel`` has a channel's shape (ASCII, ``CHANNEL_RULE``), whatever its
    pattern."""
    return (
        isinstance(channel, str)
        and len(channel) <= MAX_CHANNEL_LENGTH
        and CHANNEL_RULE.fullmatch(channel) is not None
    )


JOIN, LEAVE = "join", "leave"
# Sent to a presence channel's subscribers when join and leave stop or resume in it.
CHANNEL_PRESENCE = "channel_presence"
# Members past which a presence channel's join and leave stop, unless the pattern says.
DEFAULT_JOIN_LEAVE_LIMIT = 100
MEMBER_FIELDS = ("username", "display_name")

MaySubscribe = Callable[[Principal, str], bool | Awaitable[bool]]
# The condition on a document's channel field for the channels of a pattern a user may
# read (None: none of them), from the user and the pattern's prefix.
Readable = Callable[[Principal, str], dict[str, Any] | None]
NAME_RULE = re.compile(NAME)


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """Who may subscribe to the channels of a pattern, as data: the check on a
    subscription (``may_subscribe``, with the user and the name after the prefix) and
    the same rule as a condition on a document's channel (``readable``, with the user
    and the prefix), side by side so that they cannot drift apart."""

    name: str
    may_subscribe: Callable[[Principal, str], bool]
    readable: Readable

    def __repr__(self) -> str:
        return self.name


def exactly(prefix: str, names: Iterable[str]) -> dict[str, Any]:
    """The channels ``<prefix>:<name>`` of ``names``, as exact strings (a name that is
    not a channel name is left out: no such channel can be subscribed to)."""
    return {"$in": sorted({f"{prefix}:{name}" for name in names if NAME_RULE.fullmatch(name)})}


def every_channel_of(prefix: str) -> dict[str, Any]:
    """Every well-formed channel of the pattern: an anchored regex, the prefix escaped
    (a prefix is a declared word, but a regex is never built from unescaped text)."""
    return {"$regex": rf"^{re.escape(prefix)}:{NAME}\z"}  # \z: no final newline either


SIGNED_IN = ChannelRule(
    "SIGNED_IN",
    may_subscribe=lambda user, name: True,
    readable=lambda user, prefix: every_channel_of(prefix),
)
GROUP_MEMBERS = ChannelRule(
    "GROUP_MEMBERS",
    may_subscribe=lambda user, name: name in user.groups,
    readable=lambda user, prefix: exactly(prefix, user.groups),
)
USER_ITSELF = ChannelRule(
    "USER_ITSELF",
    may_subscribe=lambda user, name: name == user.user_id,
    readable=lambda user, prefix: exactly(prefix, [user.user_id]),
)


def members_of(group: str) -> ChannelRule:
    """Every channel of the pattern, for the members of ``group`` only."""
    return ChannelRule(
        f"members_of({group!r})",
        may_subscribe=lambda user, name: group in user.groups,
        readable=lambda user, prefix: every_channel_of(prefix) if group in user.groups else None,
    )


def channel_room(channel: str) -> str:
    """The Socket.IO room of a channel's subscribers."""
    return f"channel:{channel}"


class ChannelRefused(Exception):
    """A subscription refused, with its code (``invalid_channel``, ``forbidden``...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def ack(self) -> dict[str, Any]:
        return {"ok": False, **Error.body(self.code, self.message)}


# A subscription whose pattern's function raised.
UNAVAILABLE = ChannelRefused("unavailable", "the subscription could not be checked; try again")


@dataclass(frozen=True, slots=True)
class ChannelPattern:
    prefix: str
    may_subscribe: MaySubscribe
    presence: bool
    # Members past which join and leave stop (None: never); only with presence.
    join_leave_limit: int | None = DEFAULT_JOIN_LEAVE_LIMIT
    # The condition on a document's channel for what a user may read of the pattern's
    # channels (None: nothing, for a function with no query given).
    readable: Readable | None = None


class Channels:
    """The channel patterns of an app (``pattern``), and how many channels one socket
    may hold at once and subscribe to a minute."""

    def __init__(self, *, max_per_socket: int = 20, per_socket_per_minute: int = 60) -> None:
        if max_per_socket < 1 or per_socket_per_minute < 0:
            raise ValueError("max_per_socket must be >= 1, per_socket_per_minute >= 0")
        self.max_per_socket = max_per_socket
        self.per_socket_per_minute = per_socket_per_minute
        self._patterns: dict[str, ChannelPattern] = {}

    def declare(
        self,
        prefix: str,
        rule: ChannelRule,
        *,
        presence: bool = False,
        join_leave_limit: int | None = DEFAULT_JOIN_LEAVE_LIMIT,
    ) -> None:
        """Declare channels ``<prefix>:<name>``, subscribed to by whom ``rule`` allows
        and read through ``readable_query`` by the same. With ``presence``, join and
        leave stop past ``join_leave_limit`` members (None: no limit)."""
        if not isinstance(rule, ChannelRule):
            raise ValueError(
                f"channel pattern {prefix!r}: the rule must be a ChannelRule (SIGNED_IN, "
                f"GROUP_MEMBERS, ...), got {rule!r}; for a function, use @channels.pattern"
            )
        check_pattern(self._patterns, prefix, join_leave_limit)
        self._patterns[prefix] = ChannelPattern(
            prefix, rule.may_subscribe, presence, join_leave_limit, rule.readable
        )

    def pattern(
        self,
        prefix: str,
        *,
        presence: bool = False,
        join_leave_limit: int | None = DEFAULT_JOIN_LEAVE_LIMIT,
        readable: Readable | None = None,
    ) -> Callable[[MaySubscribe], MaySubscribe]:
        """Declare channels ``<prefix>:<name>``; the decorated function (sync or async)
        gets the user and the name, and says whether they may subscribe. ``readable``:
        the same rule as a condition for ``readable_query`` (without it, none of the
        pattern's documents is readable through it). With ``presence``, join and leave
        stop past ``join_leave_limit`` members (None: no limit)."""
        check_pattern(self._patterns, prefix, join_leave_limit)

        def declare(may_subscribe: MaySubscribe) -> MaySubscribe:
            self._patterns[prefix] = ChannelPattern(
                prefix, may_subscribe, presence, join_leave_limit, readable
            )
            return may_subscribe

        return declare

    def readable_query(self, user: Principal, field: str = "channel") -> dict[str, Any]:
        """A query on ``field`` matching the channels ``user`` may subscribe to, for the
        documents posted to them (a list of messages): each pattern's rule as a
        condition; a pattern declared with a function and no ``readable`` adds none.
        Matches no channel when no pattern gives one."""
        conditions = []
        for pattern in self._patterns.values():
            condition = None if pattern.readable is None else pattern.readable(user, pattern.prefix)
            if condition is not None:
                conditions.append({field: condition})
        if not conditions:
            return {field: {"$in": []}}
        return conditions[0] if len(conditions) == 1 else {"$or": conditions}

    @property
    def prefixes(self) -> frozenset[str]:
        return frozenset(self._patterns)

    def parse(self, channel: object) -> tuple[ChannelPattern, str]:
        """The pattern and name of ``channel``; ChannelRefused ``invalid_channel`` for a
        malformed name or one of no declared pattern."""
        if not isinstance(channel, str) or len(channel) > MAX_CHANNEL_LENGTH:
            raise ChannelRefused("invalid_channel", "channel must be a channel name")
        match = CHANNEL_RULE.fullmatch(channel)
        if match is None:
            raise ChannelRefused(
                "invalid_channel",
                "a channel is <pattern>:<name>, the name 1-100 letters, digits, '_', '.', "
                "'~' or '-'",
            )
        pattern = self._patterns.get(match.group(1))
        if pattern is None:
            raise ChannelRefused("invalid_channel", "no such channel pattern")
        return pattern, match.group(2)

    async def authorize(self, user: Principal, channel: object) -> ChannelPattern:
        """The pattern of ``channel`` if ``user`` may subscribe; ChannelRefused else."""
        pattern, name = self.parse(channel)
        allowed = pattern.may_subscribe(user, name)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if allowed is not True:
            raise ChannelRefused("forbidden", "you may not subscribe to this channel")
        return pattern


def check_pattern(declared: Iterable[str], prefix: object, join_leave_limit: object) -> None:
    """ValueError, in one line naming what is wrong, for a pattern the app may not
    declare (raised as the app's channels module is imported: at start-up)."""
    if not isinstance(prefix, str) or not PATTERN_RULE.fullmatch(prefix):
        raise ValueError(
            f"a channel pattern is 1-32 lower-case letters, digits, '_' or '-', "
            f"starting with a letter, got {prefix!r}"
        )
    if prefix in declared:
        raise ValueError(f"channel pattern {prefix!r} is declared already")
    if join_leave_limit is not None and (type(join_leave_limit) is not int or join_leave_limit < 1):
        raise ValueError(
            f"channel pattern {prefix!r}: join_leave_limit must be a positive int or None "
            f"(no limit), got {join_leave_limit!r}"
        )


# What a presence channel's grace keeps until its end: the member's public fields, and
# the mark of that departure.
Leaving = tuple[dict[str, Any], str]


class ChannelManager:
    """The channels of one socket server: subscriptions, join and leave, restores."""

    def __init__(
        self,
        channels: Channels,
        sio: socketio.AsyncServer,
        services: Services,
        presence: ChannelPresence,
        grace_seconds: float,
    ) -> None:
        self.channels = channels
        self._sio = sio
        self._services = services
        self.presence = presence
        self._limit = RateLimiter(channels.per_socket_per_minute)
        self._subscribed: dict[str, set[str]] = {}  # sid -> its channels
        # sid -> its presence channels that counted it: only those count it out again.
        # A count that failed (the presence store, or the read of the member's fields)
        # leaves the socket subscribed but uncounted, and its leaving must not take the
        # count of the user's other sockets there.
        self._counted: dict[str, set[str]] = {}
        self._members: dict[str, dict[str, Any]] = {}  # sid -> its public member fields
        # One change at a time per socket: a subscription still being made (its member
        # fields read, its presence counted) when the socket unsubscribes or goes must
        # not count it in afterwards, with nothing left to count it out.
        self._changing: dict[str, asyncio.Lock] = {}  # sid -> its lock, while connected
        self._leaving: Grace[tuple[str, str], Leaving] = Grace(grace_seconds, self._grace_ended)

    def bind_services(self, services: Services) -> None:
        """The app's final services (``Services.create`` makes them after this)."""
        self._services = services

    def bind(self) -> None:
        self._sio.on(SUBSCRIBE, self._on_subscribe, NAMESPACE)
        self._sio.on(UNSUBSCRIBE, self._on_unsubscribe, NAMESPACE)

    def channels_of(self, sid: str) -> frozenset[str]:
        return frozenset(self._subscribed.get(sid, ()))

    # The client events -------------------------------------------------------------

    async def _on_subscribe(self, sid: str, *args: Any) -> dict[str, Any]:
        user, channel = None, None
        try:
            channel = self._requested(sid, args)
            user = await self._user(sid)
            pattern, mode = await self.subscribe(sid, user, channel)
        except ChannelRefused as refused:
            if refused.code == "forbidden" and user is not None:
                # The name passed CHANNEL_RULE (parse comes first): it logs as it is.
                log.info(
                    "subscription to %s refused for user %s: %s",
                    channel,
                    user.user_id,
                    refused.message,
                )
            else:
                log.debug("subscription refused: %s", refused.code)
            return refused.ack()
        except Exception:
            # The pattern's function failed, most likely (it alone runs the app's code
            # here): the client hears so, rather than waiting for an acknowledgement that
            # never comes. ``%r``: the name may not have been checked yet.
            log.exception("subscription to %r failed", channel)
            return UNAVAILABLE.ack()
        if not pattern.presence:
            return {"ok": True}
        if mode is None:  # the presence store failed: as good as off
            return {"ok": True, "presence": {"join_leave": False, "members": None}}
        return {"ok": True, "presence": mode.public()}

    async def _on_unsubscribe(self, sid: str, *args: Any) -> dict[str, Any]:
        try:
            channel = self._requested(sid, args)
            user = await self._user(sid)
        except ChannelRefused as refused:
            return refused.ack()
        await self.unsubscribe(sid, user, channel)
        return {"ok": True}

    def _requested(self, sid: str, args: tuple[Any, ...]) -> str:
        """The channel of a subscribe or unsubscribe, within the socket's budget."""
        wait = self._limit.hit(sid)
        if wait is not None:
            raise ChannelRefused("rate_limited", f"too many subscriptions, retry in {wait}s")
        body = args[0] if len(args) == 1 else None
        if not isinstance(body, dict) or set(body) != {"channel"}:
            raise ChannelRefused("invalid_channel", 'the event takes {"channel": "<name>"}')
        channel = body["channel"]
        if not isinstance(channel, str):
            raise ChannelRefused("invalid_channel", 'the event takes {"channel": "<name>"}')
        return channel

    def _serial(self, sid: str) -> asyncio.Lock:
        lock = self._changing.get(sid)
        if lock is None:
            lock = self._changing[sid] = asyncio.Lock()
        return lock

    def _connected(self, sid: str) -> bool:
        """False from the moment the socket starts disconnecting (before socket_gone)."""
        return bool(self._sio.manager.is_connected(sid, NAMESPACE))

    async def _user(self, sid: str) -> Principal:
        try:
            session = await self._sio.get_session(sid, namespace=NAMESPACE)
        except KeyError:
            raise ChannelRefused("forbidden", "the socket is gone") from None
        return principal_of_session(session)

    # Subscriptions -----------------------------------------------------------------

    async def subscribe(
        self, sid: str, user: Principal, channel: str
    ) -> tuple[ChannelPattern, JoinLeave | None]:
        """Subscribe the socket to ``channel`` (authorised, bounded); ChannelRefused.
        Returns the channel's pattern and, in a presence channel, its join/leave mode
        (None without presence, or if the presence store failed)."""
        if not self._connected(sid):  # gone (or going): socket_gone ran or will run
            raise ChannelRefused("forbidden", "the socket is gone")
        async with self._serial(sid):  # in the order the socket asked
            if not self._connected(sid):
                raise ChannelRefused("forbidden", "the socket is gone")
            pattern = await self.channels.authorize(user, channel)
            mine = self._subscribed.setdefault(sid, set())
            if channel in mine:
                if pattern.presence and channel not in self._counted.get(sid, ()):
                    # Subscribed, but its count failed: asking again counts it now.
                    return pattern, await self._joined(sid, user, channel, pattern)
                return pattern, await self._mode(pattern, channel)
            if len(mine) >= self.channels.max_per_socket:
                raise ChannelRefused(
                    "too_many_subscriptions",
                    f"a socket holds at most {self.channels.max_per_socket} channels",
                )
            mine.add(channel)
            await self._sio.enter_room(sid, channel_room(channel), namespace=NAMESPACE)
            if pattern.presence:
                return pattern, await self._joined(sid, user, channel, pattern)
            return pattern, None

    async def _mode(self, pattern: ChannelPattern, channel: str) -> JoinLeave | None:
        """A presence channel's join/leave mode as it is (None if the store failed)."""
        if not pattern.presence:
            return None
        try:
            return await self.presence.join_leave(channel)
        except STORE_ERRORS:
            return None

    async def unsubscribe(self, sid: str, user: Principal, channel: str) -> None:
        if not self._connected(sid):  # socket_gone ends its subscriptions
            return
        async with self._serial(sid):
            mine = self._subscribed.get(sid)
            if mine is None or channel not in mine:
                return
            mine.discard(channel)
            await self._sio.leave_room(sid, channel_room(channel), namespace=NAMESPACE)
            counted = self._counted.get(sid, set())
            if channel in counted:
                counted.discard(channel)
                pattern, _name = self.channels.parse(channel)
                await self._left(sid, user, channel, pattern)

    async def authorized(self, user: Principal, requested: object) -> dict[str, bool] | None:
        """Which channels of a reconnecting socket's ``auth["channels"]`` it may have
        back (each authorised again; at most MAX_PER_SOCKET are looked at), or None when
        it asked for none. Nothing is subscribed yet: ``attach`` does it."""
        if not isinstance(requested, list):
            return None
        verdicts: dict[str, bool] = {}
        for channel in requested[: self.channels.max_per_socket]:
            if not is_channel_name(channel):
                # Not echoed in the answer: it may not even encode (a lone surrogate
                # broke the handshake's reply, found by a review).
                continue
            if channel not in verdicts:
                try:
                    await self.channels.authorize(user, channel)
                    verdicts[channel] = True
                except ChannelRefused:
                    verdicts[channel] = False
                except Exception:  # the pattern's function failed: not restored
                    log.exception("channel %r not restored: its rule raised", channel)
                    verdicts[channel] = False
        return verdicts

    async def attach(self, sid: str, user: Principal, channels: Iterable[str]) -> None:
        """Subscribe a socket in its handshake to ``channels``, authorised already."""
        async with self._serial(sid):
            mine = self._subscribed.setdefault(sid, set())
            for channel in channels:
                if channel in mine:
                    continue
                pattern, _name = self.channels.parse(channel)
                mine.add(channel)
                await self._sio.enter_room(sid, channel_room(channel), namespace=NAMESPACE)
                if pattern.presence:
                    await self._joined(sid, user, channel, pattern)

    async def socket_gone(self, sid: str, user: Principal) -> None:
        """The socket disconnected: it leaves its presence channels (once what it was
        subscribing to is counted: see ``_changing``)."""
        try:
            async with self._serial(sid):
                self._subscribed.pop(sid, None)
                for channel in self._counted.pop(sid, set()):
                    pattern, _name = self.channels.parse(channel)
                    await self._left(sid, user, channel, pattern)
        finally:
            self._counted.pop(sid, None)
            self._members.pop(sid, None)
            self._changing.pop(sid, None)

    # Presence ----------------------------------------------------------------------

    async def member(self, sid: str, user: Principal) -> dict[str, Any]:
        """The public fields of the socket's user, read once per socket."""
        known = self._members.get(sid)
        if known is None:
            found = await self._services.users.get(user.user_id) or {}
            known = {"_id": user.user_id, **{f: found.get(f) for f in MEMBER_FIELDS}}
            self._members[sid] = known
        return known

    async def _joined(
        self, sid: str, user: Principal, channel: str, pattern: ChannelPattern
    ) -> JoinLeave | None:
        """Count the socket in; tell the others of the join, or of the mode it switched
        (the socket itself learns the mode from its acknowledgement). None when it could
        not be counted (the database or the presence store failed): it stays subscribed,
        uncounted (``_counted``), and a later ``subscribe`` to the channel counts it."""
        try:
            member = await self.member(sid, user)
        except PyMongoError as error:
            log.warning(
                "channel presence not counted: the database failed (%s)", type(error).__name__
            )
            return None
        self._leaving.cancel((channel, user.user_id))
        limit = pattern.join_leave_limit
        counted = await self.presence.subscribed(channel, user.user_id, limit)
        if counted is None:
            return None
        self._counted.setdefault(sid, set()).add(channel)
        if counted.join_leave.switched:
            await self._tell_mode(channel, counted.join_leave, skip_sid=sid)
        elif counted.news and counted.join_leave.on:
            await self._announce(JOIN, channel, member, skip_sid=sid)
        return counted.join_leave

    async def _left(self, sid: str, user: Principal, channel: str, pattern: ChannelPattern) -> None:
        mark = uuid.uuid4().hex
        limit = pattern.join_leave_limit
        counted = await self.presence.unsubscribed(channel, user.user_id, mark, limit)
        if counted is None:
            return
        if counted.join_leave.switched:
            await self._tell_mode(channel, counted.join_leave)
        if counted.news:  # the grace's end decides on the leave, by the mode then
            member = await self.member(sid, user)
            self._leaving.start((channel, user.user_id), (member, mark))

    async def _grace_ended(self, key: tuple[str, str], leaving: Leaving) -> None:
        channel, user_id = key
        member, mark = leaving
        pattern, _name = self.channels.parse(channel)
        counted = await self.presence.gone(channel, user_id, mark, pattern.join_leave_limit)
        if counted is None:
            return
        if counted.join_leave.switched:
            await self._tell_mode(channel, counted.join_leave)
        elif counted.news and counted.join_leave.on:
            await self._announce(LEAVE, channel, member)

    async def _tell_mode(self, channel: str, mode: JoinLeave, skip_sid: str | None = None) -> None:
        """Tell the channel's subscribers that join and leave stop or resume."""
        await self._sio.emit(
            CHANNEL_PRESENCE,
            {"channel": channel, **mode.public()},
            to=channel_room(channel),
            namespace=NAMESPACE,
            skip_sid=skip_sid,
        )

    async def _announce(
        self, event: str, channel: str, member: dict[str, Any], skip_sid: str | None = None
    ) -> None:
        """Tell the channel's subscribers, on every process (live only: not recorded)."""
        await self._sio.emit(
            event,
            {"channel": channel, "user": member},
            to=channel_room(channel),
            namespace=NAMESPACE,
            skip_sid=skip_sid,
        )

    async def members(self, channel: str, limit: int) -> list[str]:
        return await self.presence.members(channel, limit)

    async def close(self) -> None:
        await self._leaving.close()
        await self.presence.close()


def granted(verdicts: dict[str, bool] | None) -> list[str]:
    """The channels a reconnecting socket may have back."""
    return [channel for channel, ok in (verdicts or {}).items() if ok]
