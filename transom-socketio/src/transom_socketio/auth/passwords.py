"""Argon2id password hashing, run off the event loop with bounded concurrency.

Hashing costs tens of milliseconds of CPU (and 64 MiB) by design; doing it on the
loop would stall every other request and socket, so it runs in a thread pool of its
own with ``PASSWORD_HASHING_CONCURRENCY`` threads. At most
``PASSWORD_HASHING_QUEUE`` more wait for a thread; beyond that ``HashingBusy`` is
raised at once (the API answers 503 with ``Retry-After``), so a flood of sign-ups or
logins cannot queue unbounded work that makes every other login wait.

Logins come first. Work is of two kinds: *verifying* a password (login) and *hashing*
a new one (sign-up, a rehash). Hashes may hold at most half of the places (running
and waiting), so a burst of sign-ups from many addresses, each within its own limit,
leaves the other half to logins; and a thread that comes free takes a waiting
verification before a waiting hash, so a login waits for the hashes already running,
not for the queue of sign-ups behind them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
T = TypeVar("T")
Kind = Literal["verify", "hash"]
# A free thread serves waiting work of the first kind first.
PRIORITY: tuple[Kind, ...] = ("verify", "hash")


class HashingBusy(Exception):
    """Every hashing thread is busy and the queue is full: try again shortly."""


class Passwords:
    """Hash and verify passwords with the profile chosen for this environment."""

    def __init__(self, hasher: PasswordHasher, concurrency: int = 2, queue: int = 32) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="argon2")
        self._capacity = concurrency + queue
        # Places per kind: verifications may take them all, hashes at most half.
        self._places: dict[Kind, int] = {
            "verify": self._capacity,
            "hash": max(1, self._capacity // 2),
        }
        self._in_flight: dict[Kind, int] = {"verify": 0, "hash": 0}
        self._idle_threads = concurrency
        self._waiting: dict[Kind, deque[asyncio.Future[None]]] = {
            "verify": deque(),
            "hash": deque(),
        }
        self.evaluations = 0  # passwords verified since start (what the throttle bounds)

    @classmethod
    def for_environment(cls, app_env: str, concurrency: int = 2, queue: int = 32) -> Passwords:
        # RFC 9106's low-memory profile (Argon2id, 64 MiB, t=3). Tests create many
        # users, so they use the cheapest parameters; rehash-on-login upgrades any
        # hash whose parameters differ from the current ones.
        profile = profiles.CHEAPEST if app_env == "test" else profiles.RFC_9106_LOW_MEMORY
        return cls(PasswordHasher.from_parameters(profile), concurrency, queue)

    async def _run(self, kind: Kind, work: Callable[..., T], *args: str) -> T:
        total = sum(self._in_flight.values())
        if total >= self._capacity or self._in_flight[kind] >= self._places[kind]:
            raise HashingBusy
        self._in_flight[kind] += 1
        try:
            await self._take_thread(kind)
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, work, *args)
            finally:
                self._give_thread_back()
        finally:
            self._in_flight[kind] -= 1

    async def _take_thread(self, kind: Kind) -> None:
        """Wait for a thread of the pool (work is never queued inside the executor,
        where it could not be reordered)."""
        if self._idle_threads > 0:
            self._idle_threads -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting[kind].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_thread_back()  # handed a thread just as it was cancelled
            raise

    def _give_thread_back(self) -> None:
        for kind in PRIORITY:
            waiting = self._waiting[kind]
            while waiting:
                turn = waiting.popleft()
                if not turn.done():  # a cancelled waiter is skipped
                    turn.set_result(None)
                    return
        self._idle_threads += 1

    @property
    def waiting(self) -> dict[Kind, int]:
        """How many verifications and hashes wait for a thread."""
        return {
            kind: sum(not turn.done() for turn in turns) for kind, turns in self._waiting.items()
        }

    async def hash(self, password: str) -> str:
        """A new hash (sign-up, rehash): at most half the places, after any login."""
        return await self._run("hash", self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> tuple[bool, bool]:
        """Return ``(matches, needs_rehash)``.

        With no hash (unknown user) a dummy hash is verified anyway, so the answer
        takes about as long as for a real account and does not reveal which it was.
        """
        target = password_hash or await self._dummy()
        matches = await self._run("verify", self._verify_sync, target, password)
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
        if self._dummy_hash is None:  # made by the login that needs it: on its side
            dummy = "not a real password, only spends the same time"
            self._dummy_hash = await self._run("verify", self._hasher.hash, dummy)
        return self._dummy_hash

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
