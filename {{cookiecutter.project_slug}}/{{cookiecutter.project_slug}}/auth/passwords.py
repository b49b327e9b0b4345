"""Argon2id password hashing, run off the event loop.

Hashing costs tens of milliseconds of CPU by design; doing it on the loop would
stall every other request and socket, so it runs in the default thread pool.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    """Hash and verify passwords with the profile chosen for this environment."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None

    @classmethod
    def for_environment(cls, app_env: str) -> Passwords:
        # RFC 9106's low-memory profile (Argon2id, 64 MiB, t=3). Tests create many
        # users, so they use the cheapest parameters; rehash-on-login upgrades any
        # hash whose parameters differ from the current ones.
        profile = profiles.CHEAPEST if app_env == "test" else profiles.RFC_9106_LOW_MEMORY
        return cls(PasswordHasher.from_parameters(profile))

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> tuple[bool, bool]:
        """Return ``(matches, needs_rehash)``.

        With no hash (unknown user) a dummy hash is verified anyway, so the answer
        takes about as long as for a real account and does not reveal which it was.
        """
        target = password_hash or await self._dummy()
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(None, self._verify_sync, target, password)
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
