"""engine.io sessions that have not completed Socket.IO's CONNECT yet, and WebSockets
that have not completed the upgrade of a session.

An engine.io session costs memory from its first request, before any token is
checked. Each such pending session is closed if its CONNECT has not succeeded
within SOCKETIO_CONNECT_TIMEOUT_SECONDS, and one client address holds at most
SOCKETIO_MAX_PENDING_PER_ADDRESS of them at once (realtime/transport.py refuses
the next one with 429). A WebSocket that names a session (its upgrade from
long-polling) counts the same way until its upgrade is done: it holds a connection
before anything is checked, and engine.io waits for its probe without a bound.

One timer serves every pending session: entries are kept in the order they were
opened, which is also the order of their deadlines, so the timer always wakes for
the oldest one. An authenticated socket costs nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


# What a pending entry awaits, as its log line names it when it does not come in time.
CONNECT = "Socket.IO connect"
UPGRADE = "upgrade"


@dataclass(slots=True)
class _Pending:
    address: str
    deadline: float
    close: Callable[[], None]
    awaited: str  # what did not come in time, for the log line


class PendingSessions:
    """Sessions by key (the transport handler that opened them), oldest first."""

    def __init__(self, connect_timeout: float, max_per_address: int) -> None:
        self.connect_timeout = connect_timeout
        self.max_per_address = max_per_address
        self._pending: dict[object, _Pending] = {}
        self._per_address: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def admits(self, address: str) -> bool:
        """Whether ``address`` may open one more session now (a maximum of 0: any)."""
        return not self.max_per_address or self._per_address[address] < self.max_per_address

    def opened(
        self,
        key: object,
        address: str,
        close: Callable[[], None],
        awaited: str = CONNECT,
    ) -> None:
        """A new engine.io session (or upgrade); ``close`` ends it if its CONNECT (what
        ``awaited`` names) does not come in time."""
        deadline = time.monotonic() + self.connect_timeout
        self._pending[key] = _Pending(address, deadline, close, awaited)
        self._per_address[address] += 1
        if self._timer is None:
            self._schedule()

    def settled(self, key: object) -> None:
        """The session authenticated, or closed: it is no longer pending."""
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._forget(entry.address)

    def _forget(self, address: str) -> None:
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def _schedule(self) -> None:
        oldest = next(iter(self._pending.values()), None)
        if oldest is None:
            self._timer = None
            return
        delay = max(0.0, oldest.deadline - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        expired: list[_Pending] = []
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.deadline > now:
                break
            del self._pending[key]
            self._forget(entry.address)
            expired.append(entry)
        for entry in expired:
            log.info(
                "socket dropped: no %s within %ss (address %s)",
                entry.awaited,
                self.connect_timeout,
                entry.address,
            )
            entry.close()
        self._schedule()


class LongPolls:
    """The long-polling GETs waiting for packets, by session: one at a time.

    python-engineio lets any number of a session's GETs wait, each holding its
    connection for up to ping interval + ping timeout (engine.io's JavaScript server
    closes a session whose client overlaps them); and a client's CLOSE leaves the GET
    it has waiting there that long (found by a review: 300 GETs held on one session
    that never connected, and sessions opened, polled and closed in a loop each left
    one behind while their places were given back)."""

    def __init__(self) -> None:
        # sid -> what to run when its GET ends (``after``), or None.
        self._waiting: dict[str, Callable[[], None] | None] = {}

    def begin(self, sid: str) -> bool:
        """A GET of ``sid`` starts waiting; False if one already does."""
        if sid in self._waiting:
            return False
        self._waiting[sid] = None
        return True

    def end(self, sid: str) -> None:
        """The GET of ``sid`` was answered, or its connection closed."""
        then = self._waiting.pop(sid, None)
        if then is not None:
            then()

    def after(self, sid: str, then: Callable[[], None]) -> bool:
        """Run ``then`` once the GET of ``sid`` ends; False, and ``then`` not kept, if
        none is waiting."""
        if sid not in self._waiting:
            return False
        self._waiting[sid] = then
        return True
