"""Revoked JWTs: one at a time (logout), or every JWT of a user at once.

A revoked token's ``jti`` is kept until the token expires. Ending every session of a
user (a password reset or change, a change of groups, an administrator's logout)
raises the user's *session epoch* (``users.session_epoch``) and records it here as
``{"_id": "user:<id>", "epoch": n, "keep": <jti or null>}``: a JWT carries the epoch
of its login (claim ``sep``), and one from an earlier epoch is revoked unless it is
the one ``keep`` names (a password change keeps the caller's own session). A login
that read the user before the epoch rose issues a token of the old epoch, so it is
revoked too: nothing logged in with the old password survives the reset.

Every authenticated request asks whether its JWT is revoked; the questions asked
during one event-loop pass go to the database as one ``find`` (``batching.Batcher``),
which reads the JWT's record and its user's at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import NamedTuple

from pymongo.errors import DuplicateKeyError

from ..batching import Batcher
from ..db import Database, IndexSpec

COLLECTION = "revoked_tokens"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]


class Session(NamedTuple):
    """What a revocation check needs of a JWT."""

    jti: str
    user_id: str | None = None
    epoch: int = 0


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


class RevocationStore:
    def __init__(self, database: Database) -> None:
        self._collection = database[COLLECTION]
        self._checks: Batcher[Session, bool] = Batcher(self._revoked_among)

    async def revoke(self, jti: str, expires_at: dt.datetime) -> None:
        await self._collection.update_one(
            {"_id": jti}, {"$set": {"expires_at": expires_at}}, upsert=True
        )

    async def end_sessions(
        self, user_id: str, epoch: int, keep_jti: str | None, expires_at: dt.datetime
    ) -> None:
        """Revoke the user's JWTs of epochs before ``epoch`` but ``keep_jti``, until
        ``expires_at`` (when every such JWT has expired anyway). Of two calls that
        overlap, the higher epoch stands whatever order their writes land in."""
        with contextlib.suppress(DuplicateKeyError):  # a later epoch is recorded already
            await self._collection.update_one(
                {"_id": user_key(user_id), "epoch": {"$lt": epoch}},
                {"$set": {"epoch": epoch, "keep": keep_jti, "expires_at": expires_at}},
                upsert=True,
            )

    async def kept_at(self, user_id: str, epoch: int) -> str | None:
        """The JWT id kept when the user's sessions ended at ``epoch`` (a password
        change's own session); None when none was, or when that end is not recorded yet
        (the user's epoch rises before its record here is written)."""
        ended = await self._collection.find_one(
            {"_id": user_key(user_id), "epoch": epoch}, projection={"keep": 1}
        )
        keep = ended.get("keep") if ended else None
        return keep if isinstance(keep, str) else None

    async def is_revoked(self, jti: str, user_id: str | None = None, epoch: int = 0) -> bool:
        # An expired JWT is refused by its own ``exp`` claim before this is asked,
        # so the TTL monitor's delay does not matter here.
        return await self._checks.submit(Session(jti, user_id, epoch))

    async def _revoked_among(self, sessions: list[Session]) -> list[bool | BaseException]:
        keys = {s.jti for s in sessions} | {user_key(s.user_id) for s in sessions if s.user_id}
        cursor = self._collection.find(
            {"_id": {"$in": list(keys)}}, projection={"_id": 1, "epoch": 1, "keep": 1}
        )
        found = {document["_id"]: document async for document in cursor}
        return [_revoked(session, found) for session in sessions]


def _revoked(session: Session, found: dict[str, dict[str, object]]) -> bool:
    if session.jti in found:
        return True
    ended = found.get(user_key(session.user_id)) if session.user_id else None
    if ended is None:
        return False
    epoch = ended.get("epoch")
    return isinstance(epoch, int) and session.epoch < epoch and session.jti != ended.get("keep")
