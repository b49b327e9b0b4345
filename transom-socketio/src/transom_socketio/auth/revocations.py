"""Revoked JWTs (logout). A revoked token's ``jti`` is kept until the token expires.

Every authenticated request asks whether its JWT is revoked; the questions asked
during one event-loop pass go to the database as one ``find`` (``batching.Batcher``).
"""

from __future__ import annotations

import datetime as dt

from ..batching import Batcher
from ..db import Database, IndexSpec

COLLECTION = "revoked_tokens"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]


class RevocationStore:
    def __init__(self, database: Database) -> None:
        self._collection = database[COLLECTION]
        self._checks: Batcher[str, bool] = Batcher(self._revoked_among)

    async def revoke(self, jti: str, expires_at: dt.datetime) -> None:
        await self._collection.update_one(
            {"_id": jti}, {"$set": {"expires_at": expires_at}}, upsert=True
        )

    async def is_revoked(self, jti: str) -> bool:
        # An expired JWT is refused by its own ``exp`` claim before this is asked,
        # so the TTL monitor's delay does not matter here.
        return await self._checks.submit(jti)

    async def _revoked_among(self, jtis: list[str]) -> list[bool | BaseException]:
        cursor = self._collection.find({"_id": {"$in": list(set(jtis))}}, projection={"_id": 1})
        revoked = {document["_id"] async for document in cursor}
        return [jti in revoked for jti in jtis]
