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

``members`` lists the users with at least one socket in a channel, across processes.

``LocalChannelPresence`` keeps one process's counts in memory; with ``REDIS_URL``,
``RedisChannelPresence`` (``redis_channel_presence.py``) shares them between processes.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from .presence import Counted

__all__ = ["ChannelPresence", "LocalChannelPresence"]


class ChannelPresence(Protocol):
    """What the channel manager needs of a channel presence store."""

    async def subscribed(self, channel: str, user_id: str) -> Counted | None: ...
    async def unsubscribed(self, channel: str, user_id: str, mark: str) -> Counted | None: ...
    async def gone(self, channel: str, user_id: str, mark: str) -> bool: ...
    async def members(self, channel: str, limit: int) -> list[str]: ...
    async def close(self) -> None: ...


class LocalChannelPresence:
    """Socket counts per channel and user in this process."""

    def __init__(self) -> None:
        self._sockets: dict[str, Counter[str]] = {}
        self._leaving: dict[tuple[str, str], str] = {}  # (channel, user) -> mark

    async def subscribed(self, channel: str, user_id: str) -> Counted | None:
        counts = self._sockets.setdefault(channel, Counter())
        counts[user_id] += 1
        total = counts[user_id]
        came_back = total == 1 and self._leaving.pop((channel, user_id), None) is not None
        return Counted(total, total == 1 and not came_back)

    async def unsubscribed(self, channel: str, user_id: str, mark: str) -> Counted | None:
        counts = self._sockets.get(channel)
        if counts is None or counts[user_id] <= 0:
            return None  # not counted here: nothing changes
        counts[user_id] -= 1
        left = counts[user_id]
        if left > 0:
            return Counted(left, False)
        del counts[user_id]
        if not counts:
            del self._sockets[channel]
        self._leaving[(channel, user_id)] = mark
        return Counted(0, True)

    async def gone(self, channel: str, user_id: str, mark: str) -> bool:
        if self._leaving.get((channel, user_id)) != mark:
            return False  # they came back (and maybe left again: a later grace decides)
        del self._leaving[(channel, user_id)]
        return self._sockets.get(channel, Counter()).get(user_id, 0) == 0

    async def members(self, channel: str, limit: int) -> list[str]:
        return list(self._sockets.get(channel, Counter()))[:limit]

    async def close(self) -> None:
        return None
