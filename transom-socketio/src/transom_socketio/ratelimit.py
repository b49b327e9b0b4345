"""In-process rate limits (token buckets) for cheap, hot paths: socket-token issue,
handshakes and writes per user.

These limits cost no database round trip, so they can sit in front of the fastest
paths of the app. They are per process: with N processes a client gets up to N
times the budget, which still bounds abuse. (Login throttling, which must hold
across processes and restarts, lives in the database: auth/throttle.py.)
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

# One IPv6 subscriber holds a whole /64 (2**64 addresses): per-address limits count
# the network, or each guess could come from an address of its own.
IPV6_PREFIX = 64


@functools.lru_cache(maxsize=4096)  # parsing an address is most of a limiter's cost
def address_key(address: str) -> str:
    """The key per-address limits count under: an IPv4 address, or an IPv6 /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown", or a name a test server reports
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))


def bucket_shape(per_minute: int) -> tuple[float, float]:
    """A limit of ``per_minute`` events as a token bucket: (tokens a second, the most
    tokens held: bursts of up to half the minute's events). Shared by RateLimiter and
    the recovery bucket kept in Redis (realtime/redis_history.py)."""
    return per_minute / 60.0, max(1.0, per_minute / 2)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` events per key, in bursts of up to half that; 0 disables the limit."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self._rate, self._burst = bucket_shape(per_minute)
        self._enabled = per_minute > 0
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_keys = max_keys

    def hit(self, key: str) -> int | None:
        """Count one event for ``key``: None if allowed, else seconds to wait."""
        if not self._enabled:
            return None
        bucket = self._refilled(key)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))

    def charge(self, key: str) -> None:
        """Count one event for ``key`` that happens whatever the limit: the next ``hit``
        waits that much longer (the debt is at most one burst)."""
        if self._enabled:
            bucket = self._refilled(key)
            bucket.tokens = max(-self._burst, bucket.tokens - 1)

    def _refilled(self, key: str) -> _Bucket:
        now = time.monotonic()
        bucket = self._buckets.pop(key, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return bucket


@dataclass(frozen=True)
class SocketTokenLimits:
    """Limits on issuing socket tokens: per user and per client address."""

    per_user: RateLimiter
    per_address: RateLimiter


@dataclass(frozen=True)
class WriteLimits:
    """Writes per user (every POST, PUT, PATCH and DELETE of an entity), and broadcasts
    per user (messages pushed to every socket, so limited more tightly)."""

    per_user: RateLimiter
    broadcasts_per_user: RateLimiter
