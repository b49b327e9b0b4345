"""Who is in a presence channel: per-channel, per-user socket counts.

The channel manager (realtime/channels.py) calls ``subscribed`` when a socket joins a
presence channel and ``unsubscribed`` when it leaves it (or disconnects); both return
the user's socket count in that channel after the change and whether it is news for
the channel's other subscribers (a ``join`` or, after a grace period, a ``leave``):

- the user's last socket leaving the channel marks them *leaving* it, with a mark of
  the caller's, and a grace period starts; ``gone`` at its end says whether they are
  gone (no socket of theirs came back to the channel, and the mark is still theirs),
  and clears the mark;
- a first socket is news unless it clears a *leaving* mark: the user came back within
  the grace, and nobody was told they had gone.

``members`` lists the users with at least one socket in a channel, across processes,
and those in their leave grace (holding a *leaving* mark): nobody was told they left,
so a client that reads the list then (a new subscriber, one refetching it) shows them,
and keeps showing them if they come back within the grace (no ``join`` is sent then).
Once the grace's ``gone`` clears the mark (the ``leave`` is sent), they are not listed.

Join and leave cost a delivery to every subscriber, so a channel past its pattern's
``join_leave_limit`` of members goes *quiet*: each transition counts the channel's
members after the change (every process's: users with a socket there, not those in
their leave grace, who receive no delivery) and says, in ``ChannelCounted.join_leave``,
whether join and leave are sent now, and in ``switched`` whether this change turned
them off (more than the limit) or on again (down to ``resume_at(limit)``, a tenth
below it, so a reload at the limit does not switch them back and forth). Exactly one
transition sees each switch: the channel manager tells the subscribers
(``channel_presence``). The mode is checked on each change of the channel's members;
``join_leave`` reads it without a change.

``LocalChannelPresence`` keeps one process's counts in memory; with ``REDIS_URL``,
``RedisChannelPresence`` (``redis_channel_presence.py``) shares them between processes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, NamedTuple, Protocol

try:  # the redis extra: its store raises RedisError when Redis does not answer
    from redis import RedisError

    STORE_ERRORS: tuple[type[Exception], ...] = (RedisError,)
except ImportError:  # pragma: no cover - without the extra, presence is in memory
    STORE_ERRORS = ()

__all__ = [
    "ChannelCounted",
    "ChannelPresence",
    "JoinLeave",
    "LocalChannelPresence",
    "resume_at",
]


class JoinLeave(NamedTuple):
    """A presence channel's members (every process's) and whether join and leave are sent
    in it; ``switched``: the change that returned it turned them off or on."""

    members: int
    on: bool
    switched: bool = False

    def public(self) -> dict[str, Any]:
        """What clients are told of the mode: ``{"join_leave", "members"}`` (the
        subscribe acknowledgement's ``presence``, the ``channel_presence`` event)."""
        return {"join_leave": self.on, "members": self.members}


class ChannelCounted(NamedTuple):
    """A user's sockets in a channel after a change, whether that is news for the other
    subscribers (a join; a leave's grace to start; at the grace's end, that the user is
    gone), and the channel's join/leave mode after it."""

    sockets: int
    news: bool
    join_leave: JoinLeave


def resume_at(limit: int) -> int:
    """The members a quiet channel is down to when join and leave resume: a tenth below
    the limit (at least one), so that one user coming and going does not flip them."""
    return limit - max(1, limit // 10)


class ChannelPresence(Protocol):
    """What the channel manager needs of a channel presence store. ``limit``: the
    pattern's ``join_leave_limit`` (None: join and leave always sent)."""

    async def subscribed(
        self, channel: str, user_id: str, limit: int | None = None
    ) -> ChannelCounted | None: ...
    async def unsubscribed(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None: ...
    async def gone(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None: ...
    async def join_leave(self, channel: str) -> JoinLeave: ...
    async def members(self, channel: str, limit: int) -> list[str]: ...
    async def close(self) -> None: ...


class LocalChannelPresence:
    """Socket counts per channel and user in this process."""

    def __init__(self) -> None:
        self._sockets: dict[str, Counter[str]] = {}
        # Leaving marks: channel -> user -> mark; a channel with none is no key here.
        self._leaving: dict[str, dict[str, str]] = {}
        self._quiet: set[str] = set()  # channels past their join/leave limit

    async def subscribed(
        self, channel: str, user_id: str, limit: int | None = None
    ) -> ChannelCounted | None:
        counts = self._sockets.setdefault(channel, Counter())
        counts[user_id] += 1
        total = counts[user_id]
        came_back = total == 1 and self._unmark(channel, user_id) is not None
        return ChannelCounted(total, total == 1 and not came_back, self._mode(channel, limit))

    async def unsubscribed(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None:
        counts = self._sockets.get(channel)
        if counts is None or counts[user_id] <= 0:
            return None  # not counted here: nothing changes
        counts[user_id] -= 1
        left = counts[user_id]
        if left > 0:
            return ChannelCounted(left, False, self._mode(channel, limit))
        del counts[user_id]
        if not counts:
            del self._sockets[channel]
        self._leaving.setdefault(channel, {})[user_id] = mark
        return ChannelCounted(0, True, self._mode(channel, limit))

    async def gone(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None:
        sockets = self._sockets.get(channel, Counter()).get(user_id, 0)
        if self._leaving.get(channel, {}).get(user_id) != mark:
            # They came back (and maybe left again: a later grace decides).
            return ChannelCounted(sockets, False, self._mode(channel, limit))
        self._unmark(channel, user_id)
        return ChannelCounted(sockets, sockets == 0, self._mode(channel, limit))

    def _unmark(self, channel: str, user_id: str) -> str | None:
        """Clear the user's leaving mark in the channel (the mark, or None if none), and
        the channel's entry with its last mark."""
        marks = self._leaving.get(channel)
        if marks is None:
            return None
        mark = marks.pop(user_id, None)
        if not marks:
            del self._leaving[channel]
        return mark

    async def join_leave(self, channel: str) -> JoinLeave:
        return JoinLeave(len(self._sockets.get(channel, ())), channel not in self._quiet)

    def _mode(self, channel: str, limit: int | None) -> JoinLeave:
        """The channel's mode after a change, switched if the change crossed a bound."""
        members = len(self._sockets.get(channel, ()))
        quiet = channel in self._quiet
        if limit is not None and not quiet and members > limit:
            self._quiet.add(channel)
            return JoinLeave(members, False, True)
        if quiet and (limit is None or members <= resume_at(limit)):
            self._quiet.discard(channel)
            return JoinLeave(members, True, True)
        return JoinLeave(members, not quiet)

    async def members(self, channel: str, limit: int) -> list[str]:
        """Up to ``limit`` users: those with a socket in the channel (in the order they
        came), then those in their leave grace there."""
        if limit <= 0:
            return []
        counts = self._sockets.get(channel, Counter())
        listed = list(itertools.islice(counts, limit))
        if len(listed) < limit:
            # A mark holder has no socket here (a first socket clears the mark); the
            # check keeps the list free of duplicates all the same.
            leaving = (user for user in self._leaving.get(channel, {}) if user not in counts)
            listed.extend(itertools.islice(leaving, limit - len(listed)))
        return listed

    async def close(self) -> None:
        return None
