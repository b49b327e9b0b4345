"""Argon2id password hashing, run off the event loop with bounded concurrency.

Hashing costs tens of milliseconds of CPU (and 64 MiB) by design; doing it on the
loop would stall every other request and socket, so it runs in a thread pool of its
own with ``PASSWORD_HASHING_CONCURRENCY`` threads. At most
``PASSWORD_HASHING_QUEUE`` more wait for a thread; beyond that ``HashingBusy`` is
raised at once (the API answers 503 with ``Retry-After``), so a flood of sign-ups or
logins cannot queue unbounded work that makes every other login wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
T = TypeVar("T")


class HashingBusy(Exception):
    """Every hashing thread is busy and the queue is full: try again shortly."""


class Passwords:
    """Hash and verify passwords with the profile chosen for this environment."""

    def __init__(self, hasher: PasswordHasher, concurrency: int = 2, queue: int = 32) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._capacity = concurrency + queue
        self._in_flight = 0
        self.evaluations = 0  # passwords verified since start (what the throttle bounds)

    @classmethod
    def for_environment(cls, app_env: str, concurrency: int = 2, queue: int = 32) -> Passwords:
        # RFC 9106's low-memory profile (Argon2id, 64 MiB, t=3). Tests create many
        # users, so they use the cheapest parameters; rehash-on-login upgrades any
        # hash whose parameters differ from the current ones.
        profile = profiles.CHEAPEST if app_env == "test" else profiles.RFC_9106_LOW_MEMORY
        return cls(PasswordHasher.from_parameters(profile), concurrency, queue)

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self._in_flight >= self._capacity:
            raise HashingBusy
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> tuple[bool, bool]:
        """Return ``(matches, needs_rehash)``.

        With no hash (unknown user) a dummy hash is verified anyway, so the answer
        takes about as long as for a real account and does not reveal which it was.
        """
        target = password_hash or await self._dummy()
        matches = await self._run(self._verify_sync, target, password)
        self.evaluations += 1
        if not matches or password_hash is None:
            return False, False
        return True, self._hasher.check_needs_rehash(password_hash)

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        """A hash to verify for unknown accounts, made once (off the loop, like the rest)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not a real password, only spends the same time")
        return self._dummy_hash

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
