"""Login throttling: bounded, per account-and-address, per address and per account.

Failures are counted in fixed time windows (one document per key and window, with
a TTL index). When a counter reaches its limit, logins matching that key answer
429 until the window ends, so a lock-out always ends by itself, and failures
during a lock-out do not extend it. Counting per *account and address* means an
attacker elsewhere cannot lock a user out of their own address quickly; the
per-address and per-account limits (higher) bound guessing across accounts and
from many addresses. Unknown accounts are counted exactly like real ones, so the
throttle does not reveal which accounts exist. Keys are hashed: the collection
holds no emails or addresses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass

from pymongo.errors import DuplicateKeyError

from ..db import Database, IndexSpec

COLLECTION = "login_failures"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]


@dataclass(frozen=True)
class _Limit:
    scope: str
    key: str
    maximum: int


class LoginThrottle:
    def __init__(self, database: Database, max_failures: int, window_seconds: int) -> None:
        self._collection = database[COLLECTION]
        self._max = max_failures
        self._window = window_seconds

    def _limits(self, login: str, address: str) -> list[_Limit]:
        login = login.lower()
        return [
            _Limit("account+address", f"{login}\n{address}", self._max),
            _Limit("address", address, self._max * 4),
            _Limit("account", login, self._max * 20),
        ]

    def _window_now(self) -> tuple[int, float]:
        now = time.time()
        return int(now // self._window), now

    def _doc_id(self, limit: _Limit, window: int) -> str:
        digest = hashlib.sha256(f"{limit.scope}\n{limit.key}".encode()).hexdigest()
        return f"{digest}:{window}"

    async def retry_after(self, login: str, address: str) -> int | None:
        """Seconds until a login for ``login`` from ``address`` may be tried, or None."""
        window, now = self._window_now()
        limits = {self._doc_id(limit, window): limit for limit in self._limits(login, address)}
        cursor = self._collection.find({"_id": {"$in": list(limits)}}, projection={"count": 1})
        async for doc in cursor:
            if doc.get("count", 0) >= limits[doc["_id"]].maximum:
                return max(1, math.ceil((window + 1) * self._window - now))
        return None

    async def record_failure(self, login: str, address: str) -> None:
        window, _now = self._window_now()
        expires_at = dt.datetime.fromtimestamp((window + 1) * self._window, dt.UTC)
        for limit in self._limits(login, address):
            doc_id = self._doc_id(limit, window)
            try:
                await self._collection.update_one(
                    {"_id": doc_id},
                    {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}},
                    upsert=True,
                )
            except DuplicateKeyError:  # two first failures raced to create the document
                await self._collection.update_one({"_id": doc_id}, {"$inc": {"count": 1}})

    async def record_success(self, login: str, address: str) -> None:
        """A successful login clears its account-and-address counter."""
        window, _now = self._window_now()
        first = self._limits(login, address)[0]
        await self._collection.delete_one({"_id": self._doc_id(first, window)})
