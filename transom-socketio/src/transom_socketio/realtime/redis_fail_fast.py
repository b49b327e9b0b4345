"""Calls to a Redis that has just failed fail at once, for a few seconds.

A stalled Redis answers nothing, and each call waits out its own timeout
(``REDIS_TIMEOUT_SECONDS``, the one every Redis client of the engine sets): a
handshake makes several presence calls one after another (the user's sockets elsewhere,
the count, one per presence channel it asks back), so during a stall it took 10 s, and
5 s more per channel, past socket.io-client's 20 s. After a call fails, ``FailFast``
makes the calls of the next ``seconds`` fail the same way at once (``RecentlyFailed``,
a ``redis.ConnectionError``, which every caller already handles as Redis failing), so a
handshake waits for one timeout at most; then calls try Redis again.

``pooled_client`` is the client of the engine's Redis stores (history, presence,
channel presence): those timeouts, and a pool that a burst of calls waits for.
"""

from __future__ import annotations

import time
from types import TracebackType

import redis.asyncio as aioredis

# How long a Redis client of the engine waits to connect, or for an answer: redis-py
# before 8 waits for an answer without a bound unless told.
REDIS_TIMEOUT_SECONDS = 5
# How long calls fail at once after one failed: as long as that call waited.
FAIL_FAST_SECONDS = float(REDIS_TIMEOUT_SECONDS)
# Connections of one client's pool, and how long a call waits for one when all are busy.
MAX_CONNECTIONS = 50
POOL_WAIT_SECONDS = 5


def pooled_client(redis_url: str, *, decode_responses: bool = False) -> aioredis.Redis:
    """A client of the engine's Redis calls: ``REDIS_TIMEOUT_SECONDS`` to connect and for
    an answer, and a pool of ``MAX_CONNECTIONS`` that a burst of calls waits for (up to
    ``POOL_WAIT_SECONDS``). redis-py's own pool fails the 101st concurrent call at once
    with ``MaxConnectionsError``: 150 emits at once lost 50 of them, with Redis healthy
    (found by a review)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        decode_responses=decode_responses,
    )
    return aioredis.Redis(connection_pool=pool)


class RecentlyFailed(aioredis.ConnectionError):
    """Not sent: a call to Redis failed moments ago."""


class FailFast:
    """``with fail_fast:`` around calls to one Redis."""

    def __init__(self, seconds: float = FAIL_FAST_SECONDS) -> None:
        self._seconds = seconds
        self._until = 0.0

    def __enter__(self) -> None:
        if time.monotonic() < self._until:
            raise RecentlyFailed("Redis failed moments ago: not sent")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, aioredis.RedisError) and not isinstance(error, RecentlyFailed):
            self._until = time.monotonic() + self._seconds
