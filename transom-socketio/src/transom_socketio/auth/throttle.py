"""Attempt counters kept in the database: login throttling and the sign-up limit.

An attempt *reserves* its slot before any password is hashed or verified, with one
atomic ``find_one_and_update`` whose filter holds the limit (``count < maximum``)
and whose update is the increment: the database applies both to the document at
once, so however many requests arrive together, no more than ``maximum`` of them
get a slot in a window. A request that finds the counter full is answered 429 and
counts nothing, so failures during a lock-out do not extend it.

Each counter also counts its attempts still *pending*: reserved, their password not
yet checked. A right password clears its account-and-address counter (the failures of
that account from that address are forgotten) only when it is the one attempt pending
there; while others are being checked it keeps its slot, so that a burst of guesses
beside the owner's login still gets no more than ``maximum`` passwords checked.

Counters live in fixed time windows (one document per key and window, with a TTL
index), so a lock-out always ends by itself. Keys are hashed: the collection holds
no emails, usernames or addresses.

Login keys (see SECURITY.md): *identifier and address* at ``LOGIN_MAX_FAILURES``,
*address* at 4x and *identifier* at 10x, the identifier being what was typed
(username or email, normalised: any case or Unicode form counts as one). An attacker
at one address therefore gets ``LOGIN_MAX_FAILURES`` guesses per window, and spends
only that much of the identifier's looser ceiling: the owner, from another address,
still logs in. An account with a username and an email has two ceilings, 20x in all.
Nothing is keyed by the account an identifier names: a counter shared by the
username and the email, once full, refused one account's email and nobody else's,
which told whose email it is; and unknown identifiers are counted exactly like real
ones. A password change (no identifier typed: the caller's JWT names the account)
is counted per account: *account and address*, *address*, *account* at 20x.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..db import Database, IndexSpec
from ..ratelimit import address_key

COLLECTION = "login_failures"
INDEXES = [IndexSpec(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]
ADDRESS_FACTOR = 4
ACCOUNT_FACTOR = 20
# The ceiling of one identifier typed at login: an account's username and email
# together have the account's.
IDENTIFIER_FACTOR = ACCOUNT_FACTOR // 2


@dataclass(frozen=True)
class Limit:
    scope: str
    key: str
    maximum: int


@dataclass(frozen=True)
class Reservation:
    """Slots taken by one attempt (give them back with ``release``)."""

    doc_ids: tuple[str, ...]


class Throttled(Exception):
    """A counter is full; ``retry_after`` seconds until its window ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class AttemptCounter:
    """Counts attempts per key in fixed windows of ``window_seconds``."""

    def __init__(self, database: Database, window_seconds: int) -> None:
        self._collection = database[COLLECTION]
        self._window = window_seconds

    def _window_now(self) -> tuple[int, float]:
        now = time.time()
        return int(now // self._window), now

    @staticmethod
    def _doc_id(limit: Limit, window: int) -> str:
        digest = hashlib.sha256(f"{limit.scope}\n{limit.key}".encode()).hexdigest()
        return f"{digest}:{window}"

    async def reserve(self, limits: list[Limit]) -> Reservation:
        """Take one slot under every limit, in order, or raise Throttled taking none."""
        window, now = self._window_now()
        expires_at = dt.datetime.fromtimestamp((window + 1) * self._window, dt.UTC)
        taken: list[str] = []
        for limit in limits:
            doc_id = self._doc_id(limit, window)
            if not await self._take(doc_id, limit.maximum, expires_at):
                await self.release(Reservation(tuple(taken)))
                raise Throttled(max(1, math.ceil((window + 1) * self._window - now)))
            taken.append(doc_id)
        return Reservation(tuple(taken))

    async def _take(self, doc_id: str, maximum: int, expires_at: dt.datetime) -> bool:
        """One atomic check-and-increment. A full counter does not match the filter, so
        the upsert tries to insert its ``_id`` again and fails: that is the refusal."""
        for _attempt in range(2):  # a first insert can race another: the second try sees it
            try:
                await self._collection.find_one_and_update(
                    {"_id": doc_id, "count": {"$lt": maximum}},
                    {
                        "$inc": {"count": 1, "pending": 1},
                        "$setOnInsert": {"expires_at": expires_at},
                    },
                    upsert=True,
                    projection={"_id": 1},
                    return_document=ReturnDocument.AFTER,
                )
                return True
            except DuplicateKeyError:
                full = await self._collection.find_one(
                    {"_id": doc_id, "count": {"$gte": maximum}}, projection={"_id": 1}
                )
                if full is not None:
                    return False
        return False

    async def release(self, reservation: Reservation) -> None:
        """Give slots back (an attempt that turned out not to count)."""
        for doc_id in reservation.doc_ids:
            await self._collection.update_one(
                {"_id": doc_id, "count": {"$gt": 0}}, {"$inc": {"count": -1, "pending": -1}}
            )

    async def settle(self, reservation: Reservation) -> None:
        """The attempt was checked and counts: its slots stay taken, no longer pending."""
        for doc_id in reservation.doc_ids:
            await self._collection.update_one({"_id": doc_id}, {"$inc": {"pending": -1}})

    async def clear_if_alone(self, doc_id: str) -> bool:
        """Forget a counter if the attempt holding ``doc_id`` is its only one pending."""
        cleared = await self._collection.delete_one({"_id": doc_id, "pending": 1})
        return bool(cleared.deleted_count)


class LoginThrottle:
    """Login attempts per account-and-address, per address and per account."""

    def __init__(self, database: Database, max_failures: int, window_seconds: int) -> None:
        self._counter = AttemptCounter(database, window_seconds)
        self._max = max_failures

    def limits(self, account: str, address: str, typed: str | None = None) -> list[Limit]:
        """The counters of one attempt, in the order they are taken. The address comes
        first: a counter is written (inserted, and given back on a refusal) only once
        those before it had room, so a client whose address is full writes nothing,
        whatever account names it tries.

        ``typed``: a login's identifier as typed (normalised), which keys its counters
        in place of ``account``, its ceiling at ``IDENTIFIER_FACTOR``. Keyed by the
        account, a client that used up the guesses of a username (from one address, or
        the ceiling from twenty) was refused (429) for that account's email and not for
        anyone else's, which told it whose email that is (found by reviews: the pair
        counter in 0.3.6, the ceiling in 0.3.12)."""
        address = address_key(address)
        key, factor = (typed, IDENTIFIER_FACTOR) if typed else (account, ACCOUNT_FACTOR)
        return [
            Limit("address", address, self._max * ADDRESS_FACTOR),
            Limit("account+address", f"{key}\n{address}", self._max),
            Limit("account", key, self._max * factor),
        ]

    async def reserve(self, account: str, address: str, typed: str | None = None) -> Reservation:
        """Take this attempt's slots before the password is verified; raise Throttled."""
        return await self._counter.reserve(self.limits(account, address, typed))

    async def release(self, reservation: Reservation) -> None:
        """The attempt was not evaluated (the hashing queue was full, say)."""
        await self._counter.release(reservation)

    async def failed(self, reservation: Reservation) -> None:
        """A wrong password was checked: it counts."""
        await self._counter.settle(reservation)

    async def succeeded(self, reservation: Reservation) -> None:
        """A right password does not count: its address and account slots are given
        back, and the failures of that account from that address are forgotten, unless
        other attempts of theirs are being checked at this moment: then it keeps its slot
        there, so those attempts get no more than ``maximum`` passwords checked."""
        address_slot, pair, *rest = reservation.doc_ids
        await self._counter.release(Reservation((address_slot, *rest)))
        if not await self._counter.clear_if_alone(pair):
            await self._counter.settle(Reservation((pair,)))


class SignupLimit:
    """At most ``maximum`` sign-up attempts per address per window (0: no limit)."""

    def __init__(self, database: Database, maximum: int, window_seconds: int) -> None:
        self._counter = AttemptCounter(database, window_seconds)
        self._max = maximum

    async def reserve(self, address: str) -> None:
        if self._max > 0:
            limit = Limit("signup+address", address_key(address), self._max)
            await self._counter.reserve([limit])


# The mail one address typed may be sent from every client together, in multiples of
# what one client may ask for it (MAIL_REQUESTS_PER_ACCOUNT): 4 clients, 20 mails an
# hour by default, bound one inbox's flood and the owner's lock-out alike.
MAIL_ACCOUNT_FACTOR = 4


class AccountMailLimits:
    """The limits of the account-mail routes, counted like logins (atomic reservations).

    - *mail requests* (a verification mail again, a password reset): per address typed
      and client address (``per_account``), per address typed (4 x that, so nobody can
      flood one inbox, nor shut its owner out from one client) and per client address;
    - *token attempts* (verify, reset): per client address, so a client cannot try
      tokens by the thousand (a token is 256 random bits: this bounds the load).

    Each is 0 for no limit. Keys are hashed like every other counter's.
    """

    def __init__(
        self,
        database: Database,
        *,
        per_account: int,
        per_address: int,
        token_attempts_per_address: int,
        window_seconds: int,
    ) -> None:
        self._counter = AttemptCounter(database, window_seconds)
        self._per_account = per_account
        self._per_address = per_address
        self._token_attempts = token_attempts_per_address

    async def reserve_mail(self, email_key: str, address: str) -> None:
        """One mail request for the normalised address ``email_key``; raise Throttled.

        Counted per client address, per address typed *from that client* (``per_account``),
        and per address typed from anywhere (``MAIL_ACCOUNT_FACTOR`` x ``per_account``),
        as logins are. Counted per address typed only, five anonymous requests from one
        client shut the owner out of reset and verification for the whole window."""
        address = address_key(address)
        limits = []
        if self._per_address > 0:
            limits.append(Limit("mail+address", address, self._per_address))
        if self._per_account > 0:
            limits.append(
                Limit("mail+account+address", f"{email_key}\n{address}", self._per_account)
            )
            limits.append(Limit("mail+account", email_key, self._per_account * MAIL_ACCOUNT_FACTOR))
        if limits:
            await self._counter.reserve(limits)

    async def reserve_token_attempt(self, address: str) -> None:
        """One verification or reset token tried from ``address``; raise Throttled."""
        if self._token_attempts > 0:
            limit = Limit("token+address", address_key(address), self._token_attempts)
            await self._counter.reserve([limit])
