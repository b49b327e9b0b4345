"""The users collection: creation, look-up and the public view of a user.

Emails and usernames are unique without regard to case or Unicode form: the
indexes are on ``normalise_identifier`` copies (NFC, case-folded), so a composed
and a decomposed "é", or "Straße" and "STRASSE", name one account. A user that
signs up without a username gets one derived from the email.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..db import Database, IndexSpec
from ..models.paging import Page, newest_first

COLLECTION = "users"
INDEXES = [
    IndexSpec(COLLECTION, [("email_lower", 1)], {"unique": True}),
    IndexSpec(COLLECTION, [("username_lower", 1)], {"unique": True}),
]
PUBLIC_FIELDS = ("username", "email", "display_name", "groups", "created_at")
GROUP_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_GROUPS = 32
# A change of a user's groups in progress (``begin_groups_change``): its id and when it
# began. One older than this was left by a process that stopped in the middle of it.
CHANGING = "groups_changing"
CHANGE_ABANDONED_SECONDS = 60
USERNAME_RULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{2,31}$")
# An address as a mail's To: header reads it, one mailbox: a dot-atom local part (RFC
# 5322's atext, and non-ASCII letters for SMTPUTF8) at a dotted domain. Anything else RFC
# 5322 allows there (quotes, commas, colons, angle brackets, comments) would make the
# header name other recipients, or none, than the account's. Written without lookaheads
# (its JSON Schema pattern is generated from, by the API's fuzz tests): the non-ASCII
# range leaves out the C1 controls, every Unicode space and line separator, and the
# invisible characters (zero widths, direction marks, overrides and isolates, BOM).
_NON_ASCII = (
    r"\u00a1-\u167f\u1681-\u1fff\u2010-\u2027\u2030-\u205e\u2070-\u2fff\u3001-\ufefe\uff00-\uffff"
)
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_NON_ASCII}-]+"
_LABEL = rf"[A-Za-z0-9{_NON_ASCII}-]+"
EMAIL_RULE = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z0-9{_NON_ASCII}-]{{2,}}$")


def normalise_identifier(value: str) -> str:
    """The form in which emails and usernames are compared: NFC, case-folded, then NFC
    again (case folding can leave a string unnormalised), surrounding blanks cut."""
    folded = unicodedata.normalize("NFC", value.strip()).casefold()
    return unicodedata.normalize("NFC", folded)


class EmailTaken(Exception):
    pass


class UsernameTaken(Exception):
    pass


def is_verified(user: dict[str, Any]) -> bool:
    """Whether the user's address is verified. An account stored before verification
    existed has no ``verified`` field: it counts as verified, so upgrading an app
    locks nobody out."""
    return bool(user.get("verified", True))


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """The fields anyone may see; never the password hash."""
    public = {"_id": str(user["_id"]), **{name: user.get(name) for name in PUBLIC_FIELDS}}
    public["groups"] = list(user.get("groups") or [])
    public["verified"] = is_verified(user)
    return public


def parse_object_id(value: object) -> ObjectId | None:
    """An ObjectId from its 24-hex-digit string (or itself); None for anything else."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == 24:
        try:
            return ObjectId(value)
        except InvalidId:
            return None
    return None


class UserStore:
    def __init__(self, database: Database) -> None:
        self._collection = database[COLLECTION]

    async def create(
        self,
        *,
        email: str,
        password_hash: str,
        username: str | None,
        display_name: str | None,
        verified: bool = False,
        groups: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Insert a user; raise EmailTaken or UsernameTaken on a conflict."""
        chosen = username
        email = unicodedata.normalize("NFC", email)
        for _attempt in range(5):
            name = chosen or _username_from_email(email, suffix=_attempt > 0)
            user = {
                "email": email,
                "email_lower": normalise_identifier(email),
                "username": name,
                "username_lower": normalise_identifier(name),
                "display_name": display_name or name,
                "password_hash": password_hash,
                "groups": list(groups),
                "verified": verified,
                "session_epoch": 0,
                "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
            }
            try:
                result = await self._collection.insert_one(user)
            except DuplicateKeyError as error:
                if "email_lower" in _conflicting_key(error):
                    raise EmailTaken from None
                if username is not None:
                    raise UsernameTaken from None
                continue  # a derived username collided: try another suffix
            user["_id"] = result.inserted_id
            return user
        raise UsernameTaken

    async def find_by_login(self, login: str) -> dict[str, Any] | None:
        """Find by email if ``login`` contains '@', else by username (case-insensitive)."""
        field = "email_lower" if "@" in login else "username_lower"
        return await self._collection.find_one({field: normalise_identifier(login)})

    async def get(self, user_id: object) -> dict[str, Any] | None:
        oid = parse_object_id(user_id)
        return None if oid is None else await self._collection.find_one({"_id": oid})

    async def exists(self, user_id: object) -> bool:
        oid = parse_object_id(user_id)
        if oid is None:
            return False
        return await self._collection.find_one({"_id": oid}, projection={"_id": 1}) is not None

    async def find_by_email(self, email: str) -> dict[str, Any] | None:
        return await self._collection.find_one({"email_lower": normalise_identifier(email)})

    async def upgrade_password_hash(self, user_id: ObjectId, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` (the one just verified) with ``new_hash`` of the same
        password; False, and nothing changed, when the stored hash is no longer
        ``old_hash``: a reset or a change that landed meanwhile wins."""
        result = await self._collection.update_one(
            {"_id": user_id, "password_hash": old_hash}, {"$set": {"password_hash": new_hash}}
        )
        return result.modified_count == 1

    async def mark_verified(self, user_id: ObjectId) -> bool:
        """Mark the address verified; False when the account no longer exists."""
        result = await self._collection.update_one({"_id": user_id}, {"$set": {"verified": True}})
        return result.matched_count == 1

    async def begin_groups_change(
        self, user_id: ObjectId, groups: list[str], change: ObjectId
    ) -> dict[str, Any] | None:
        """Write ``groups``, marked as the change ``change`` in progress (``CHANGING``);
        the user as it was before, or None when there is no such user or another change
        of its groups is in progress. The mark keeps a second change from reading the
        first one's provisional groups as the user's (found by a review: two changes of
        the last administrator at once could leave no administrator)."""
        now = dt.datetime.now(dt.UTC)
        abandoned = now - dt.timedelta(seconds=CHANGE_ABANDONED_SECONDS)
        return await self._collection.find_one_and_update(
            {
                "_id": user_id,
                "$or": [{CHANGING: {"$exists": False}}, {f"{CHANGING}.at": {"$lt": abandoned}}],
            },
            {"$set": {"groups": groups, CHANGING: {"id": change, "at": now}}},
            return_document=ReturnDocument.BEFORE,
        )

    async def undo_groups_change(
        self, user_id: ObjectId, change: ObjectId, previous: list[str]
    ) -> None:
        """Put ``previous`` back and end the change, unless it is no longer in progress."""
        await self._collection.update_one(
            {"_id": user_id, f"{CHANGING}.id": change},
            {"$set": {"groups": previous}, "$unset": {CHANGING: ""}},
        )

    async def end_groups_change(self, user_id: ObjectId, change: ObjectId) -> dict[str, Any] | None:
        """Keep the change's groups and end it, raising the session epoch (the user's
        JWTs carry their groups); the updated user, or None if the change is no longer in
        progress (abandoned for ``CHANGE_ABANDONED_SECONDS``, then taken over)."""
        return await self._collection.find_one_and_update(
            {"_id": user_id, f"{CHANGING}.id": change},
            {"$inc": {"session_epoch": 1}, "$unset": {CHANGING: ""}},
            return_document=ReturnDocument.AFTER,
        )

    async def has_member(self, group: str) -> bool:
        return await self._collection.find_one({"groups": group}, projection={"_id": 1}) is not None

    async def new_session_epoch(
        self,
        user_id: ObjectId,
        changes: dict[str, Any] | None = None,
        *,
        unless_changed_from: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Raise the user's session epoch (auth/revocations.py), applying ``changes``
        (a new password hash, new groups) in the same atomic update; the updated user,
        or None when there is no such account, or when it no longer holds the values of
        ``unless_changed_from`` (fields as they were read before the change was decided)."""
        return await self._collection.find_one_and_update(
            {"_id": user_id, **(unless_changed_from or {})},
            {"$inc": {"session_epoch": 1}, **({"$set": changes} if changes else {})},
            return_document=ReturnDocument.AFTER,
        )

    async def page(self, before: ObjectId | None, limit: int) -> Page:
        """Up to ``limit`` users, newest first, created before the user ``before``."""
        return await newest_first(
            self._collection, {}, before=before, limit=limit, projection={"password_hash": 0}
        )


def _conflicting_key(error: DuplicateKeyError) -> str:
    details = error.details or {}
    pattern = details.get("keyPattern") or details.get("keyValue")
    return " ".join(pattern) if pattern else str(details.get("errmsg", error))


def _username_from_email(email: str, *, suffix: bool) -> str:
    local = re.sub(r"[^A-Za-z0-9_.-]", "", email.split("@", 1)[0])[:24].lstrip(".-")
    if len(local) < 3:
        local = f"user{local}"
    return f"{local}-{secrets.randbelow(10_000):04d}" if suffix else local
