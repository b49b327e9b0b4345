"""One-time socket tokens (the nonce store, ``registry['transomNonce']``).

A socket token is 32 random bytes, URL-safe. Only its SHA-256 hash is stored, as
the document ``_id``, with a TTL index on ``expires_at``. Consuming it is atomic,
with a filter that also requires ``expires_at > now``, so:

- of any number of simultaneous handshakes with one token, exactly one gets it;
- an expired token is refused even before the TTL monitor has removed it;
- a database dump reveals no usable token.

Calls made during one event-loop pass share a round trip (``batching.Batcher``):
tokens issued together are stored with one ``insert_many``, and handshakes arriving
together are consumed together, selecting by ``_id`` with ``$in``:

- with sockets in one process (no REDIS_URL), the process is the only one that
  consumes or voids tokens: the live ones are read (``find``) and deleted
  (``delete_many``), two queries (``_read_and_delete``); a batch of tokens all issued
  here needs no read, only the delete (``_delete_remembered``);
- with several, the live, unclaimed ones are claimed (``update_many`` stamping the
  batch's id: each document's update is atomic, so a token goes to one batch in any
  process), read back by that stamp and deleted (``_claim_all``).

A process remembers the grants of the tokens it issued, so the read of a batch of
those carries no grant, and a claim that took them all needs no read.
(``find_one_and_delete``, one query for a lone handshake, is not used: the embedded
test database answers it by scanning the collection.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bson import ObjectId
from pymongo.errors import BulkWriteError, WriteError

from ..batching import Batcher, Lane
from ..db import Database, IndexSpec
from .revocations import RevocationStore
from .tokens import Principal

__all__ = ["COLLECTION", "SocketTokenStore", "token_hash"]

log = logging.getLogger(__name__)

COLLECTION = "socket_tokens"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]
TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters; anything else cannot be one of ours.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# What a handshake needs of the document.
GRANT = {"user": 1, "jti": 1, "exp": 1, "sep": 1}
# How far the database's clock may run ahead of the app's, for its TTL monitor.
CLOCK_SKEW_SECONDS = 5
CLAIMED_BY = "claimed_by"  # the id of the batch of handshakes consuming the token
# In a grant this process remembers (never stored): when the revocation check of the
# token's request was sent (``Principal._revocation_checked_at``), if known.
CHECKED_AT = "checked_at"
# Grants remembered for the tokens this process issued (~0.9 KB each, ~9 MB at most);
# beyond this, the oldest are forgotten and their handshakes read the grant back.
REMEMBER_AT_MOST = 10_000


# A grant this process remembers: its token's expiry (``time.monotonic()``) and the grant.
Remembered = tuple[float, dict[str, Any]]


@dataclass(frozen=True)
class IssuedSocketToken:
    token: str
    expires_in: int


def _unexpired() -> dict[str, Any]:
    return {"expires_at": {"$gt": dt.datetime.now(dt.UTC)}}


def _live(keys: list[str]) -> dict[str, Any]:
    """The filter of the tokens of ``keys`` that a batch may consume: not expired, not
    being consumed by another batch."""
    return {"_id": {"$in": keys}, **_unexpired(), CLAIMED_BY: {"$exists": False}}


def _answers(
    keys: list[str], remembered: list[dict[str, Any] | None], found: dict[str, dict[str, Any]]
) -> list[dict[str, Any] | BaseException | None]:
    """Each key's grant: None unless its token was consumed (``found``), else the grant
    this process remembers (with ``CHECKED_AT``), else the one read."""
    return [
        None
        if key not in found
        else grant or {field: found[key][field] for field in GRANT if field in found[key]}
        for key, grant in zip(keys, remembered, strict=True)
    ]


def _grant(remembered: Remembered | None) -> dict[str, Any] | None:
    return None if remembered is None else remembered[1]


def _explain_lost(deleting: set[str], lost: int, ending_of: Callable[[], set[str]]) -> set[str]:
    """The tokens of ``deleting`` a batch may grant when its delete removed ``lost``
    fewer than it asked for. Only the TTL monitor may have taken some, and only of the
    tokens ending about then (``ending_of()``): those are refused. If that does not
    explain the loss, another process consumes tokens too (several processes without
    REDIS_URL): which ones it took is unknown, so none is granted, and that is logged."""
    if not lost:
        return deleting
    ending = ending_of()
    if lost > len(ending & deleting):
        log.warning(
            "socket handshakes refused: another process consumed %d of their tokens "
            "meanwhile; without REDIS_URL the app must run as one process",
            lost - len(ending & deleting),
        )
        return set()
    return deleting - ending


def jwt_unexpired(grant: dict[str, Any]) -> bool:
    """Whether the JWT that minted the token of ``grant`` has not expired yet."""
    exp = grant.get("exp")
    return isinstance(exp, int) and exp > time.time()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class SocketTokenStore:
    def __init__(
        self,
        database: Database,
        ttl_seconds: int,
        remember_at_most: int = REMEMBER_AT_MOST,
        revocations: RevocationStore | None = None,
        sole_consumer: bool = False,
    ) -> None:
        self._collection = database[COLLECTION]
        # The app's one store (services.py), so the revocation checks of handshakes and
        # of authenticated requests made in one event-loop pass share one read.
        self._revocations = revocations if revocations is not None else RevocationStore(database)
        self._ttl = ttl_seconds
        self._remember_at_most = remember_at_most
        # hash -> (its expiry, its grant), oldest first: what the document holds, so a
        # batch of handshakes for tokens issued here needs no read.
        self._issued: OrderedDict[str, Remembered] = OrderedDict()
        # Inserts and handshakes take turns at the database (``batching.Lane``): each
        # kind's calls gather while the other's batch is out, so batches are larger.
        lane = Lane()
        self._inserts: Batcher[dict[str, Any], None] = Batcher(self._insert_all, lane=lane)
        # With sockets in one process (no REDIS_URL), this store is the only one that
        # consumes or voids socket tokens, and a batch needs no claim (``_read_and_delete``);
        # with several, it does (``_claim_all``).
        consume = self._read_and_delete if sole_consumer else self._claim_all
        self._consumes: Batcher[str, dict[str, Any] | None] = Batcher(consume, lane=lane)
        # Held by a batch from its read to its delete, and by a voiding (logout), so that
        # no voiding deletes a token between a batch's read and its delete.
        self._deleting = asyncio.Lock()
        # Hashes whose handshake this process is answering: a second handshake with
        # the same token meanwhile is refused here, so one batch never holds a token
        # twice and two batches of this process never race for one.
        self._consuming: set[str] = set()

    async def issue(self, principal: Principal) -> IssuedSocketToken:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        key = token_hash(token)
        # ``exp``: the JWT's expiry, which the socket must not outlive.
        grant = {
            "user": principal.snapshot(),
            "jti": principal.jti,
            "exp": int(principal.expires_at.timestamp()),
            "sep": principal.session_epoch,
        }
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._ttl)
        deadline = time.monotonic() + self._ttl  # the same expiry, on this process's clock
        await self._inserts.submit({"_id": key, **grant, "expires_at": expires_at})
        if principal._revocation_checked_at is not None:
            grant[CHECKED_AT] = principal._revocation_checked_at
        self._remember(key, deadline, grant)
        return IssuedSocketToken(token, self._ttl)

    def _remember(self, key: str, deadline: float, grant: dict[str, Any]) -> None:
        now = time.monotonic()
        issued = self._issued
        while issued and (
            len(issued) >= self._remember_at_most or next(iter(issued.values()))[0] <= now
        ):
            issued.popitem(last=False)  # the oldest: past its token's expiry, or one too many
        if self._remember_at_most > 0:
            issued[key] = (deadline, grant)

    def _recall(self, key: str) -> Remembered | None:
        """The expiry (``time.monotonic()``) and grant of a token issued here (forgotten as
        it is recalled), the grant with ``CHECKED_AT`` when its request's revocation check
        is known; None for a token not issued here, or forgotten."""
        return self._issued.pop(key, None)

    def _forget(self, voided: Callable[[dict[str, Any]], bool]) -> None:
        """Forget the grants of the tokens being voided, so that a handshake with one
        reads the database (which no longer has it) instead of trusting its grant."""
        for key in [key for key, (_, grant) in self._issued.items() if voided(grant)]:
            del self._issued[key]

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
        key = token_hash(token)
        if key in self._consuming:
            return None
        self._consuming.add(key)
        try:
            return await self._consumes.submit(key)
        finally:
            self._consuming.discard(key)

    async def _claim_all(self, keys: list[str]) -> list[dict[str, Any] | BaseException | None]:
        """Consume distinct token hashes; each answer is the grant or None.

        The tokens still live and unclaimed are claimed with one ``update_many`` that
        stamps this batch's id on them (each document's update is atomic, so a token is
        claimed by one batch only, in any process), read back by that stamp, and
        deleted. The read is skipped when the claim took every token and this process
        issued each one: their grants are remembered. A claimed token is never granted
        again, even if this process stops before the delete: the TTL index removes it.
        (A lone handshake goes the same way: ``find_one_and_delete`` would be one query,
        but the embedded test database answers it by scanning the collection.)
        """
        remembered = [_grant(self._recall(key)) for key in keys]
        batch = ObjectId()
        claim = await self._collection.update_many(_live(keys), {"$set": {CLAIMED_BY: batch}})
        if claim.modified_count == len(keys) and None not in remembered:
            # Keys are distinct: the claim took all of them, every one remembered here.
            found = {key: grant for key, grant in zip(keys, remembered, strict=True) if grant}
        else:
            claimed = self._collection.find(
                {"_id": {"$in": keys}, CLAIMED_BY: batch}, projection={"_id": 1, **GRANT}
            )
            found = {doc.pop("_id"): doc async for doc in claimed}  # hash -> grant
        if found:
            await self._collection.delete_many({"_id": {"$in": list(found)}})
        return _answers(keys, remembered, found)

    async def _read_and_delete(
        self, keys: list[str]
    ) -> list[dict[str, Any] | BaseException | None]:
        """Consume distinct token hashes, when this store is the only one that consumes or
        voids tokens: the live ones are read, deleted, and granted (a batch of tokens all
        issued here needs no read: ``_delete_remembered``). Exactly once: only batches of
        this store delete tokens (with distinct hashes: ``_consuming``), and voidings
        (logout) only when no batch is between its read and its delete (the lock); the
        TTL monitor may remove one meanwhile, but only a token about to expire, which
        was live when read and which no one else is granted (``_explain_lost``)."""
        async with self._deleting:
            recalled = [self._recall(key) for key in keys]
            if None not in recalled:
                return await self._delete_remembered(keys, cast(list[Remembered], recalled))
            remembered = [_grant(r) for r in recalled]
            read = self._collection.find(_live(keys), {"_id": 1, "expires_at": 1, **GRANT})
            found = {doc.pop("_id"): doc async for doc in read}
            if not found:
                return [None] * len(keys)
            deleted = await self._collection.delete_many({"_id": {"$in": list(found)}})

        def ending() -> set[str]:
            # What the TTL monitor may have taken (its clock may run ahead of ours).
            expiring = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=CLOCK_SKEW_SECONDS)
            return {key for key, doc in found.items() if doc["expires_at"] <= expiring}

        kept = _explain_lost(set(found), len(found) - deleted.deleted_count, ending)
        return _answers(keys, remembered, {key: found[key] for key in kept})

    async def _delete_remembered(
        self, keys: list[str], recalled: list[Remembered]
    ) -> list[dict[str, Any] | BaseException | None]:
        """Consume tokens all issued here (under ``_deleting``): their grants are
        remembered, so the unexpired ones are deleted, with no read, and granted. A token
        voided since it was issued is not among them: its grant was forgotten
        (``_forget``), and its batch went the way of ``_read_and_delete``."""
        now = time.monotonic()
        live = [key for key, (deadline, _) in zip(keys, recalled, strict=True) if deadline > now]
        if not live:
            return [None] * len(keys)
        deleted = await self._collection.delete_many({"_id": {"$in": live}, **_unexpired()})

        def ending() -> set[str]:
            return {
                key
                for key, (deadline, _) in zip(keys, recalled, strict=True)
                if deadline - now <= CLOCK_SKEW_SECONDS
            }

        kept = _explain_lost(set(live), len(live) - deleted.deleted_count, ending)
        return [
            grant if key in kept else None for key, (_, grant) in zip(keys, recalled, strict=True)
        ]

    async def session_is_live(self, grant: dict[str, Any]) -> bool:
        """Whether the JWT that minted a consumed token still holds: not expired, and not
        revoked. A token requested at the moment of logout can be stored after logout
        voided the JWT's unused tokens; this check refuses it at the handshake."""
        if not jwt_unexpired(grant):
            return False
        user_id = str(grant["user"]["_id"])
        epoch = grant.get("sep", 0)
        epoch = epoch if isinstance(epoch, int) else 0
        return not await self._revocations.is_revoked(grant["jti"], user_id, epoch)

    async def discard_for_jwt(self, jti: str) -> None:
        """Void the unused socket tokens minted with a JWT (on logout)."""
        async with self._deleting:
            self._forget(lambda grant: grant["jti"] == jti)
            await self._collection.delete_many({"jti": jti})

    async def discard_for_user(self, user_id: str, keep_jti: str | None = None) -> None:
        """Void the unused socket tokens of a user, but those minted with ``keep_jti``
        (when every session of the user ends, or every other one)."""
        query: dict[str, Any] = {"user._id": user_id, "jti": {"$exists": True}}
        if keep_jti is not None:
            query["jti"] = {"$exists": True, "$ne": keep_jti}
        async with self._deleting:
            self._forget(lambda grant: grant["user"]["_id"] == user_id and grant["jti"] != keep_jti)
            await self._collection.delete_many(query)
