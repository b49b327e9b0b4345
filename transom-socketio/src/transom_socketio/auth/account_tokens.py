"""The one-time tokens that account mails carry: email verification and password reset.

They live in the nonce collection beside the socket tokens (``nonces.COLLECTION``),
with the same rules: 32 random bytes, URL-safe, of which only a SHA-256 hash is
stored, as the ``_id``; expiry checked in the query (the TTL index only cleans up);
consumed with one atomic ``find_one_and_delete``, so of two requests with one token
exactly one gets it.

Each kind hashes its token with its own prefix (``sha256("reset:" + token)``), so a
token of one kind names no document of another: a reset token is no verification
token, and neither is a socket token (which hashes with no prefix), nor the other way
round. The ``kind`` field repeats it in the filter.

Looking a token up by its hash is the constant-time comparison: the secret itself is
never compared, and the hash of a guess tells nothing about the stored one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Literal

from bson import ObjectId

from ..db import Database
from .nonces import COLLECTION, TOKEN_BYTES, TOKEN_SHAPE

__all__ = ["AccountTokens", "TokenKind"]

TokenKind = Literal["verify", "reset"]


def kind_hash(kind: TokenKind, token: str) -> str:
    return hashlib.sha256(f"{kind}:{token}".encode("ascii")).hexdigest()


class AccountTokens:
    """One kind of mailed token (``verify`` or ``reset``), valid ``ttl_seconds``."""

    def __init__(self, database: Database, kind: TokenKind, ttl_seconds: int) -> None:
        self._collection = database[COLLECTION]
        self.kind: TokenKind = kind
        self.ttl_seconds = ttl_seconds

    async def issue(self, user_id: ObjectId) -> str:
        """A new token for the user; earlier ones of this kind stay valid until used."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.ttl_seconds)
        await self._collection.insert_one(
            {
                "_id": kind_hash(self.kind, token),
                "kind": self.kind,
                "account": user_id,
                "expires_at": expires_at,
            }
        )
        return token

    async def consume(self, token: object) -> ObjectId | None:
        """The user id of a live token of this kind, once; None for anything else.

        A value that is not a string of a token's shape is refused before the query,
        so no operator object reaches the database."""
        if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
            return None
        found = await self._collection.find_one_and_delete(
            {
                "_id": kind_hash(self.kind, token),
                "kind": self.kind,
                "expires_at": {"$gt": dt.datetime.now(dt.UTC)},
            },
            projection={"account": 1},
        )
        account = None if found is None else found.get("account")
        return account if isinstance(account, ObjectId) else None

    async def discard_for_user(self, user_id: ObjectId) -> None:
        """Void every unused token of this kind of the user (after a reset, say)."""
        await self._collection.delete_many({"kind": self.kind, "account": user_id})
