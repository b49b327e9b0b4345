"""Who is online: per-user socket counts.

The handshake calls ``connected`` once a socket is accepted and ``disconnected``
when it goes; both return the user's socket count after the change and whether it is
news for everyone else (realtime/presence_events.py announces it):

- the last socket going marks the user *leaving*, with a mark of the caller's, and a
  grace period starts; ``left`` at its end says whether they are gone (no socket of
  theirs came back, and the mark is still theirs), and clears the mark;
- a first socket is news unless it clears a *leaving* mark: the user came back
  within the grace, and nobody was told they had gone.

``counts`` answers ``registry['transomMsgClient'].presence(users)`` and
``socket_counts(users)``; ``online`` answers ``online_counts()``.

``LocalPresence`` keeps the counts of one process in memory; with ``REDIS_URL`` set,
``RedisPresence`` (``redis_presence.py``) shares them between processes.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Protocol

__all__ = ["OnlineCounts"]


class Counted(NamedTuple):
    """A user's sockets after a change, and whether the change is news for everyone else
    (they came online, or their last socket went and a grace period is to start)."""

    sockets: int
    news: bool


class OnlineCounts(NamedTuple):
    """Users with at least one socket, and the sockets they hold (every process's)."""

    users: int
    sockets: int


class Presence(Protocol):
    """What the handshake, the presence events and the message client need of a
    presence store; ``LocalPresence`` and ``RedisPresence`` are the two."""

    async def connected(self, user_id: str) -> Counted | None: ...
    async def disconnected(self, user_id: str, mark: str) -> Counted | None: ...
    async def left(self, user_id: str, mark: str) -> bool: ...
    async def counts(self, user_ids: list[str]) -> dict[str, int]: ...
    async def online(self) -> OnlineCounts: ...
    async def sockets_elsewhere(self, user_id: str) -> int | None: ...
    async def close(self) -> None: ...


class LocalPresence:
    """Socket counts per user in this process.

    Kept here rather than read from the ``user:<id>`` room sizes: a socket joins its
    rooms before its handshake is over (and may still be refused), so two tabs whose
    handshakes overlap would both see a room of two and nobody would be told the user
    came online. These counts change only in ``connected``/``disconnected``, with no
    await in between, so each transition is seen exactly once.
    """

    def __init__(self) -> None:
        self._sockets: Counter[str] = Counter()
        self._total = 0  # the sum of ``_sockets``
        self._leaving: dict[str, str] = {}  # user -> the mark of their grace period

    async def connected(self, user_id: str) -> Counted | None:
        self._sockets[user_id] += 1
        self._total += 1
        total = self._sockets[user_id]
        came_back = total == 1 and self._leaving.pop(user_id, None) is not None
        return Counted(total, total == 1 and not came_back)

    async def disconnected(self, user_id: str, mark: str) -> Counted | None:
        if user_id in self._sockets:
            self._total -= 1
        self._sockets[user_id] -= 1
        left = self._sockets[user_id]
        if left > 0:
            return Counted(left, False)
        del self._sockets[user_id]
        self._leaving[user_id] = mark
        return Counted(0, True)

    async def left(self, user_id: str, mark: str) -> bool:
        if self._leaving.get(user_id) != mark:
            return False  # they came back (and maybe left again: a later grace decides)
        del self._leaving[user_id]
        return self._sockets.get(user_id, 0) == 0

    async def counts(self, user_ids: list[str]) -> dict[str, int]:
        return {user_id: self._sockets.get(user_id, 0) for user_id in user_ids}

    async def online(self) -> OnlineCounts:
        return OnlineCounts(len(self._sockets), self._total)

    async def sockets_elsewhere(self, user_id: str) -> int | None:
        """The user's sockets on other processes: none, this process holds them all."""
        return 0

    async def close(self) -> None:
        return None
