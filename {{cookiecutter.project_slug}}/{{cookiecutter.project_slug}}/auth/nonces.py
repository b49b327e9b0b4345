"""One-time socket tokens (the nonce store, ``registry['transomNonce']``).

A socket token is 32 random bytes, URL-safe. Only its SHA-256 hash is stored, as
the document ``_id``, with a TTL index on ``expires_at``. Consuming it is a single
``find_one_and_delete`` whose filter also requires ``expires_at > now``, so:

- of any number of simultaneous handshakes with one token, exactly one gets it;
- an expired token is refused even before the TTL monitor has removed it;
- a database dump reveals no usable token.

Tokens issued during one event-loop pass are stored with one ``insert_many``
(``batching.Batcher``); consuming stays one atomic query per token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from pymongo.errors import BulkWriteError, WriteError

from ..batching import Batcher
from ..db import Database, IndexSpec
from .tokens import Principal

COLLECTION = "socket_tokens"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]
TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters; anything else cannot be one of ours.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class IssuedSocketToken:
    token: str
    expires_in: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class SocketTokenStore:
    def __init__(self, database: Database, ttl_seconds: int) -> None:
        self._collection = database[COLLECTION]
        self._ttl = ttl_seconds
        self._inserts: Batcher[dict[str, Any], None] = Batcher(self._insert_all)

    async def issue(self, principal: Principal) -> IssuedSocketToken:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        await self._inserts.submit(
            {
                "_id": token_hash(token),
                "user": principal.snapshot(),
                "jti": principal.jti,
                "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._ttl),
            }
        )
        return IssuedSocketToken(token, self._ttl)

    async def _insert_all(self, documents: list[dict[str, Any]]) -> list[BaseException | None]:
        """Insert a batch; a document the database refused fails only its own caller."""
        try:
            await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            refused = {e["index"]: e for e in error.details.get("writeErrors", [])}
            if not refused:
                raise  # a write-concern error: no document is known to be stored
            return [
                WriteError(refused[i]["errmsg"], refused[i]["code"], refused[i])
                if i in refused
                else None
                for i in range(len(documents))
            ]
        return [None] * len(documents)

    async def consume(self, token: object) -> dict[str, Any] | None:
        """Return ``{"user": {...}, "jti": ...}`` once for a live token, else None.

        Anything that is not a string of the right shape is refused before the
        query, so no operator object can reach the database.
        """
        if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
            return None
        return await self._collection.find_one_and_delete(
            {"_id": token_hash(token), "expires_at": {"$gt": dt.datetime.now(dt.UTC)}},
            projection={"_id": 0, "user": 1, "jti": 1},
        )

    async def discard_for_jwt(self, jti: str) -> None:
        """Void the unused socket tokens minted with a JWT (on logout)."""
        await self._collection.delete_many({"jti": jti})
