"""Sockets end when the JWT that opened them expires.

A socket lives no longer than its session. The handshake refuses a token minted
with an expired or revoked JWT, logout disconnects the JWT's room, and this closes
the sockets of a JWT when it expires. (A client that wants a socket for longer
reconnects with a fresh socket token from a fresh JWT: README, "Sockets and sessions".)

Cost per socket: none of its own. Expiries are kept by JWT in one-second buckets
(``{second: {jti, ...}}`` and a heap of the seconds), and one timer, for the
earliest bucket, is armed at any time: no task or timer per socket. When a bucket
is due, the sockets of its JWTs that this process holds are disconnected.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class SessionExpiry:
    def __init__(self, disconnect_jwt: Callable[[str], Awaitable[None]]) -> None:
        self._disconnect_jwt = disconnect_jwt
        self._buckets: dict[int, set[str]] = {}
        self._due: list[int] = []  # heap of the buckets' seconds
        self._timer: asyncio.TimerHandle | None = None
        self._timer_second: int | None = None
        self._sweeps: set[asyncio.Task[None]] = set()

    def watch(self, jti: str, expires_at: float) -> None:
        """Disconnect the sockets of JWT ``jti`` once ``expires_at`` (epoch seconds) passes."""
        second = math.ceil(expires_at)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
            heapq.heappush(self._due, second)
        bucket.add(jti)
        self._arm()

    def _arm(self) -> None:
        if not self._due or self._timer_second == self._due[0]:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_second = self._due[0]
        delay = max(0.0, self._timer_second - time.time())
        self._timer = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_second = None
        now = time.time()
        expired: list[str] = []
        while self._due and self._due[0] <= now:
            expired.extend(self._buckets.pop(heapq.heappop(self._due)))
        if expired:
            sweep = asyncio.ensure_future(self._sweep(expired))
            self._sweeps.add(sweep)
            sweep.add_done_callback(self._sweeps.discard)
        self._arm()

    async def _sweep(self, jtis: list[str]) -> None:
        for jti in jtis:
            try:
                await self._disconnect_jwt(jti)
            except Exception:  # one failure must not keep the other sessions' sockets open
                log.exception("could not disconnect the sockets of an expired session")
