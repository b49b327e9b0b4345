"""Revoked JWTs (logout). A revoked token's ``jti`` is kept until the token expires."""

from __future__ import annotations

import datetime as dt

from ..db import Database, IndexSpec

COLLECTION = "revoked_tokens"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]


class RevocationStore:
    def __init__(self, database: Database) -> None:
        self._collection = database[COLLECTION]

    async def revoke(self, jti: str, expires_at: dt.datetime) -> None:
        await self._collection.update_one(
            {"_id": jti}, {"$set": {"expires_at": expires_at}}, upsert=True
        )

    async def is_revoked(self, jti: str) -> bool:
        # An expired JWT is refused by its own ``exp`` claim before this is asked,
        # so the TTL monitor's delay does not matter here.
        return await self._collection.find_one({"_id": jti}, projection={"_id": 1}) is not None
