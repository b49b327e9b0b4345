"""JSON Web Tokens (PyJWT, HS256 only) and the ``Principal`` they carry.

A JWT identifies the caller of REST requests. Its claims carry what the socket
handshake needs (id, username, groups), so issuing a socket token needs no user
lookup. Logging out revokes the token's ``jti``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import jwt
from bson import ObjectId

from .revocations import RevocationStore

__all__ = ["ADMIN_GROUP", "Principal"]

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti"]
# The last second of year 9999: a later ``exp`` is no date Python (or BSON) can hold.
LATEST_EXPIRY = 253_402_300_799
MAX_JTI_LENGTH = 64
MAX_CLAIM_TEXT = 256
ADMIN_GROUP = "admin"
MAX_EPOCH = 2**53
# Tokens whose signature and claims were verified, kept so that a client's next request
# with the same JWT skips PyJWT (about 100 µs: a reconnecting client's socket-token
# request, every REST call). Only tokens that passed are kept, with their expiry, which
# is checked again on every use; revocation is checked on every request (but see
# ``authenticate``'s ``recent_check_will_do``).
VERIFIED_KEPT = 4096

# Whether a JWT's session (its user's sessions, or the JWT itself) ended at or after
# a time (``time.monotonic()``), when that is known without the database: the room
# manager's record of room ends with sockets in one process (realtime/rooms.py,
# ``sessions_ended_since``). Arguments: user id, jti, time. None: not known.
SessionEnds = Callable[[str, str, float], bool | None]


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or revoked."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the JWT describes them."""

    user_id: str
    username: str | None
    groups: tuple[str, ...]
    jti: str
    expires_at: dt.datetime
    # The user's session epoch at login (auth/revocations.py): ending every session of
    # the user raises it, and revokes the JWTs of earlier epochs.
    session_epoch: int = 0
    # Not public: this process's ``time.monotonic()`` just before ``authenticate`` asked
    # whether the JWT is revoked (None for a principal made otherwise). A logout that
    # check did not see happened after it (auth/nonces.py, realtime/handshake.py).
    _revocation_checked_at: float | None = field(default=None, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        """A member of the ``admin`` group (the administration API)."""
        return ADMIN_GROUP in self.groups

    def snapshot(self) -> dict[str, Any]:
        """The minimal user record a socket carries."""
        return {"_id": self.user_id, "username": self.username, "groups": list(self.groups)}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    jti: str


class TokenService:
    def __init__(
        self,
        secret: str,
        ttl_seconds: int,
        revocations: RevocationStore,
        previous_secret: str | None = None,
        session_ends: SessionEnds | None = None,
    ) -> None:
        self._secret = secret
        # During a JWT_SECRET rotation, tokens signed with the previous secret stay
        # valid until they expire; new tokens are signed with the current one.
        self._verification_secrets = [secret] + ([previous_secret] if previous_secret else [])
        self._ttl = ttl_seconds
        self._revocations = revocations
        self._session_ends = session_ends
        # JWT -> (its expiry, its principal, with the start of its last revocation check
        # here that found it live, if any).
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def issue(
        self,
        user: dict[str, Any],
        live_at: float | None = None,
        read_since: dt.datetime | None = None,
    ) -> IssuedToken:
        """A JWT for ``user`` (as just read). ``live_at``: when the read of ``user``
        began (``time.monotonic()``), which counts as the JWT's first revocation check:
        its jti is new, and an end of the user's sessions that the read did not see
        raised the epoch after that time (``authenticate``). ``read_since``: the same
        moment on the wall clock; the JWT then expires a TTL after it, not after now.

        Why: a JWT of the epoch the read saw is refused after an end of sessions only
        while the record of that end lasts, a TTL after the end (``end_sessions``). A
        login that read the user before a reset, then waited for the password hasher,
        got a JWT that outlived the record by that wait and was accepted again once the
        record expired (found by a review)."""
        now = dt.datetime.now(dt.UTC)
        start = min(now, read_since or now)
        expires = start + dt.timedelta(seconds=self._ttl)
        jti = secrets.token_urlsafe(16)
        claims = {
            "sub": str(user["_id"]),
            "username": user.get("username"),
            "groups": list(user.get("groups", [])),
            "iat": now,
            "exp": expires,
            "jti": jti,
            "sep": int(user.get("session_epoch", 0)),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        if live_at is not None:
            # What decoding it would give (PyJWT writes dates as whole seconds).
            principal = _principal(
                {**claims, "iat": int(now.timestamp()), "exp": int(expires.timestamp())}
            )
            self._keep(token, replace(principal, _revocation_checked_at=live_at))
        # Its life left, in whole seconds: the TTL for a login that waited less than one
        # (an Argon2 hash on a busy machine takes a few tenths).
        return IssuedToken(token, self._ttl - int((now - start).total_seconds()), jti)

    def _keep(self, token: str, principal: Principal) -> None:
        self._verified[token] = (principal.expires_at.timestamp(), principal)
        self._verified.move_to_end(token)
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.popitem(last=False)

    def decode(self, token: str) -> Principal:
        """Verify signature, algorithm and expiry; raise InvalidToken otherwise."""
        kept = self._verified.get(token)
        if kept is not None:
            expiry, principal = kept
            if expiry <= time.time():  # PyJWT's test, without leeway
                del self._verified[token]
                raise InvalidToken("the token has expired")
            self._verified.move_to_end(token)
            return principal
        principal = self._verify(token)
        self._keep(token, principal)
        return principal

    def _verify(self, token: str) -> Principal:
        claims = None
        for secret in self._verification_secrets:
            try:
                claims = jwt.decode(
                    token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise InvalidToken("the token has expired") from None
            except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
                # PyJWT lets some claim values through as Python errors: an ``iat`` of
                # 1e999 (JSON allows it) overflows int(), for one.
                raise InvalidToken("the token is invalid") from None
        if claims is None:
            raise InvalidToken("the token is invalid")
        return _principal(claims)

    async def authenticate(self, token: str, recent_check_will_do: bool = False) -> Principal:
        """The JWT's principal if it is valid and not revoked, else InvalidToken.

        ``recent_check_will_do`` (the socket-token request): no database read when a
        check made here found the JWT live and no session of it has ended since, as
        ``session_ends`` knows: with sockets in one process, where every logout and
        every end of a user's sessions ends a room here after its revocation is
        written, and for as long as the room manager remembers those ends (10 minutes).
        The principal then carries that check's time, which the handshake of its token
        asks the same question about."""
        principal = self.decode(token)
        if recent_check_will_do and self._still_live(principal):
            return principal
        revocations = self._revocations
        checked_at = time.monotonic()
        if await revocations.is_revoked(principal.jti, principal.user_id, principal.session_epoch):
            raise InvalidToken("the token has been revoked")
        checked = replace(principal, _revocation_checked_at=checked_at)
        kept = self._verified.get(token)
        if kept is not None and _checked_before(kept[1], checked_at):
            self._verified[token] = (kept[0], checked)
        return checked

    def _still_live(self, principal: Principal) -> bool:
        """Whether a recent check here found ``principal``'s JWT live, and no session of
        it has ended since, as far as this process knows without the database."""
        checked_at = principal._revocation_checked_at
        if checked_at is None or self._session_ends is None:
            return False
        return self._session_ends(principal.user_id, principal.jti, checked_at) is False

    async def live_at(self, principal: Principal, epoch: int) -> bool:
        """Whether ``principal``'s JWT is still a live session of a user whose session
        epoch was read as ``epoch``: issued at that epoch, or the one session kept when
        the user's sessions last ended. A change decided on that read (a password
        change) must not go on for a session that ended since the request was
        authenticated."""
        if principal.session_epoch >= epoch:
            return True
        return await self._revocations.kept_at(principal.user_id, epoch) == principal.jti

    async def revoke(self, principal: Principal) -> None:
        await self._revocations.revoke(principal.jti, principal.expires_at)

    async def end_sessions(
        self, user_id: str, epoch: int, keep_jti: str | None, until: dt.datetime
    ) -> None:
        """Revoke the user's JWTs of epochs before ``epoch``, but ``keep_jti``."""
        await self._revocations.end_sessions(user_id, epoch, keep_jti, until)


def _checked_before(principal: Principal, checked_at: float) -> bool:
    earlier = principal._revocation_checked_at
    return earlier is None or earlier < checked_at


def _principal(claims: dict[str, Any]) -> Principal:
    """The caller a verified token describes; every claim is checked for type and range,
    since a token signed with the right secret may still come from an older or buggy
    issuer (or a leaked secret) and must not crash the request."""
    sub, jti, groups = claims.get("sub"), claims.get("jti"), claims.get("groups", [])
    username, exp = claims.get("username"), claims.get("exp")
    epoch = claims.get("sep", 0)  # tokens issued before session epochs existed: 0
    valid = (
        isinstance(sub, str)
        and ObjectId.is_valid(sub)
        and len(sub) == 24
        and isinstance(jti, str)
        and 0 < len(jti) <= MAX_JTI_LENGTH
        and isinstance(groups, list)
        and all(isinstance(g, str) and len(g) <= MAX_CLAIM_TEXT for g in groups)
        and (username is None or (isinstance(username, str) and len(username) <= MAX_CLAIM_TEXT))
        and isinstance(exp, int | float)
        and not isinstance(exp, bool)
        and 0 < exp <= LATEST_EXPIRY
        and isinstance(epoch, int)
        and not isinstance(epoch, bool)
        and 0 <= epoch <= MAX_EPOCH
    )
    if not valid:
        raise InvalidToken("the token is invalid")
    return Principal(
        user_id=cast(str, sub).lower(),
        username=username,
        groups=tuple(groups),
        jti=cast(str, jti),
        expires_at=dt.datetime.fromtimestamp(int(cast(float, exp)), dt.UTC),
        session_epoch=cast(int, epoch),
    )
