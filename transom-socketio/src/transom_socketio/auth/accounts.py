"""Local accounts: sign-up, login, logout, socket tokens, email verification and
password reset and change, as the app's handlers call them.

Each method does one user-facing step with every rule of it (throttles, password
hashing off the event loop, revocations), and raises an ``ApiError`` with the status
and code the client gets. The app's handlers (a generated app's ``auth.py``) stay
short: read the body, call one method, write the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from ..ratelimit import address_key
from ..web.errors import ApiError, bad_request, too_many_requests, unauthorized
from .passwords import HashingBusy
from .shapes import ChangePassword, EmailAddress, Login, ResetPassword, Signup, VerifyEmail
from .throttle import Throttled
from .tokens import Principal
from .users import (
    EmailTaken,
    UsernameTaken,
    is_verified,
    normalise_identifier,
    parse_object_id,
    public_user,
)

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["Accounts", "account_id", "check_login_fields"]

log = logging.getLogger(__name__)


def invalid_credentials() -> ApiError:
    # One answer for an unknown account and a wrong password.
    return ApiError(401, "invalid_credentials", "invalid username or password")


def invalid_token() -> ApiError:
    return ApiError(
        400, "invalid_token", "this link is unknown, used or expired: ask for a new one"
    )


async def throttled(reservation: Awaitable[None], message: str) -> None:
    """Await a limit's reservation; 429 with Retry-After when it is full."""
    try:
        await reservation
    except Throttled as full:
        raise too_many_requests(full.retry_after, message) from None


# Mail requests finished after their answer, held until done (the event loop keeps
# only weak references to tasks).
_background: set[asyncio.Task[None]] = set()


def in_background(work: Coroutine[Any, Any, None], kind: str) -> None:
    """Run ``work`` (store a token, send its mail) after the answer; a failure is
    logged with the mail's kind and the error's class, never a token."""

    async def run() -> None:
        try:
            await work
        except Exception as error:
            log.error("could not send a %s mail: %s", kind, type(error).__name__)

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


def check_login_fields(raw: dict[str, Any]) -> None:
    """A login body names the account by ``username`` or ``email``: 400 naming
    ``email`` when it has neither (unknown fields are named first, by ``json_body``)."""
    unknown = set(raw) - set(Login.model_fields)
    if not unknown and raw.get("username") is None and raw.get("email") is None:
        raise bad_request("email is required", field="email")


class Accounts:
    """The account steps of one app, on its services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def sign_up(self, body: Signup, client_ip: str) -> dict[str, Any]:
        """Create the account and mail its verification link; its public fields. 429
        past SIGNUPS_PER_ADDRESS, 409 for a taken email or username, 503 when password
        hashing is saturated."""
        await throttled(
            self.services.signup_limit.reserve(client_ip),
            "too many sign-ups from this address, try again later",
        )
        user = await self.create(body)
        await self.send_verification(user)
        return public_user(user)

    async def create(
        self, body: Signup, *, verified: bool = False, groups: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Store a new account (its password hashed off the event loop); the stored
        user. 409 ``email_taken`` or ``username_taken``."""
        services = self.services
        try:
            return await services.users.create(
                email=body.email,
                password_hash=await services.passwords.hash(body.password),
                username=body.username,
                display_name=body.display_name,
                verified=verified,
                groups=groups,
            )
        except EmailTaken:
            raise ApiError(
                409, "email_taken", "an account with this email already exists"
            ) from None
        except UsernameTaken:
            raise ApiError(409, "username_taken", "this username is already taken") from None

    async def log_in(self, body: Login, client_ip: str) -> dict[str, Any]:
        """Check the password under the login throttle; the Bearer JWT answer. 401
        ``invalid_credentials`` for an unknown account as for a wrong password."""
        services = self.services
        login = body.username or body.email or ""
        # The JWT's first revocation check, and the start of its life (tokens.issue).
        read_at, read_since = time.monotonic(), dt.datetime.now(dt.UTC)
        user = await services.users.find_by_login(login)
        # Budgets per identifier typed, never per account (the engine's SECURITY.md).
        typed = f"login:{normalise_identifier(login)}"
        throttle = services.login_throttle
        try:
            reservation = await throttle.reserve(typed, client_ip, typed)
        except Throttled as throttled:
            raise too_many_requests(
                throttled.retry_after, "too many failed logins, try again later"
            ) from None
        try:
            matches, needs_rehash = await services.passwords.verify(
                user.get("password_hash") if user else None, body.password
            )
        except HashingBusy:
            await throttle.release(reservation)  # no password was evaluated: 503, retry
            raise
        if user is None or not matches:
            await throttle.failed(reservation)
            raise invalid_credentials()
        await throttle.succeeded(reservation)
        if services.settings.require_verified_email and not is_verified(user):
            # Told only to whoever knows the password.
            raise ApiError(
                403,
                "email_not_verified",
                "verify your email address first: follow the link in the mail we sent "
                "(POST /api/v1/user/verify/resend sends another)",
            )
        if needs_rehash:
            with contextlib.suppress(HashingBusy):  # the upgrade can wait for the next login
                hashed = await services.passwords.hash(body.password)
                # Only over the hash verified: a reset that landed meanwhile stands.
                await services.users.upgrade_password_hash(
                    user["_id"], user["password_hash"], hashed
                )
        issued = services.tokens.issue(user, live_at=read_at, read_since=read_since)
        return {"token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in}

    async def log_out(self, principal: Principal) -> None:
        """Revoke the JWT, void its unused socket tokens, disconnect its sockets (that
        last whatever came before: a handshake may trust the room's end to tell it of the
        logout, realtime/handshake.py)."""
        services = self.services
        try:
            await services.tokens.revoke(principal)
            await services.nonces.discard_for_jwt(principal.jti)
        finally:
            await services.message_client.disconnect_token(principal.jti)

    async def me(self, principal: Principal) -> dict[str, Any]:
        """The caller's public fields; 401 if the account no longer exists."""
        user = await self.services.users.get(principal.user_id)
        if user is None:
            raise unauthorized("invalid_token", "the account no longer exists")
        return public_user(user)

    async def socket_token(self, principal: Principal, client_ip: str) -> dict[str, Any]:
        """A one-time socket token for the handshake, with the recovery position to
        connect from; 429 past the per-user and per-address limits."""
        services = self.services
        limits = services.socket_token_limits
        retry_after = limits.per_user.hit(principal.user_id) or limits.per_address.hit(
            address_key(client_ip)
        )
        if retry_after is not None:
            raise too_many_requests(retry_after, "too many socket tokens requested, retry later")
        issued = await services.nonces.issue(principal)
        services.metrics.socket_tokens_issued.inc()
        position = await services.message_client.position()
        return {"token": issued.token, "expires_in": issued.expires_in, "position": position}

    # Email verification and password reset -------------------------------------------

    async def send_verification(self, user: dict[str, Any]) -> None:
        """Mail the user a verification link (a new one-time token); the mail goes out
        in the background."""
        services = self.services
        token = await services.verify_tokens.issue(user["_id"])
        self._mail(user, "verify", "/verify", token, services.verify_tokens.ttl_seconds)

    def _mail(self, user: dict[str, Any], kind: str, path: str, token: str, ttl: int) -> None:
        base = self.services.settings.public_base_url
        self.services.mailer.send(
            kind,
            user["email"],
            link=f"{base}{path}?token={token}",
            user=public_user(user),
            expires_minutes=max(1, ttl // 60),
            app_name=self.services.settings.mongodb_db,
            public_url=base,
        )

    async def verify_email(self, body: VerifyEmail, client_ip: str) -> None:
        """Consume a verification token; 400 ``invalid_token`` for an unknown, used or
        expired one, 429 past TOKEN_ATTEMPTS_PER_ADDRESS."""
        services = self.services
        await throttled(
            services.mail_limits.reserve_token_attempt(client_ip),
            "too many links tried from this address, try again later",
        )
        user_id = await services.verify_tokens.consume(body.token)
        if user_id is None or not await services.users.mark_verified(user_id):
            raise invalid_token()

    async def _mail_request(self, body: EmailAddress, client_ip: str) -> dict[str, Any] | None:
        """Count one mail request (429 past its limits); the account of the address."""
        services = self.services
        await throttled(
            services.mail_limits.reserve_mail(normalise_identifier(body.email), client_ip),
            "too many mails asked for, try again later",
        )
        return await services.users.find_by_email(body.email)

    async def resend_verification(self, body: EmailAddress, client_ip: str) -> None:
        """Mail a new verification link if the address has an unverified account. The
        caller learns nothing either way: the answer is the same, after the same work
        (the token is stored and the mail sent in the background)."""
        user = await self._mail_request(body, client_ip)
        if user is not None and not is_verified(user):
            in_background(self.send_verification(user), "verify")

    async def forgot_password(self, body: EmailAddress, client_ip: str) -> None:
        """Mail a password-reset link if the address has an account; the same answer
        after the same work either way, as for ``resend_verification``."""
        user = await self._mail_request(body, client_ip)
        if user is not None:
            in_background(self._send_reset(user), "reset")

    async def _send_reset(self, user: dict[str, Any]) -> None:
        tokens = self.services.reset_tokens
        token = await tokens.issue(user["_id"])
        self._mail(user, "reset", "/reset", token, tokens.ttl_seconds)

    async def reset_password(self, body: ResetPassword, client_ip: str) -> None:
        """Set the new password with a reset token; every session of the user ends.

        The password is hashed before the token is consumed, so a busy hasher (503)
        leaves the token usable. Of two resets with one token, exactly one consumes it.
        Following the mailed link proves the address: the account is verified too."""
        services = self.services
        await throttled(
            services.mail_limits.reserve_token_attempt(client_ip),
            "too many links tried from this address, try again later",
        )
        password_hash = await services.passwords.hash(body.password)
        user_id = await services.reset_tokens.consume(body.token)
        if user_id is None:
            raise invalid_token()
        changes = {"password_hash": password_hash, "verified": True}
        user = await services.users.new_session_epoch(user_id, changes)
        if user is None:
            raise invalid_token()
        await self.end_sessions(user)
        self._notify_password_changed(user)

    async def change_password(
        self, principal: Principal, body: ChangePassword, client_ip: str
    ) -> None:
        """Check the current password (under the login throttle; 403
        ``invalid_credentials`` when wrong), set the new one and end every other
        session of the user: the caller's JWT stays valid.

        The change is written only if the user is as it was read: the caller's session
        live, the same password hash and session epoch. A reset, a change of groups or
        an administrator's logout that lands while the new password is hashed ends the
        caller's session too; this change must not then raise the epoch again keeping
        that session (it would come back, with its old groups): 409 ``account_changed``
        instead, and nothing changes."""
        services = self.services
        user = await services.users.get(principal.user_id)
        if user is None:
            raise unauthorized("invalid_token", "the account no longer exists")
        read_epoch = int(user.get("session_epoch") or 0)
        if not await services.tokens.live_at(principal, read_epoch):
            raise unauthorized("invalid_token", "the token has been revoked")
        account = f"user:{user['_id']}"
        throttle = services.login_throttle
        try:
            reservation = await throttle.reserve(account, client_ip)
        except Throttled as full:
            message = "too many wrong passwords, retry later"
            raise too_many_requests(full.retry_after, message) from None
        try:
            matches, _rehash = await services.passwords.verify(
                user.get("password_hash"), body.current_password
            )
        except HashingBusy:
            await throttle.release(reservation)
            raise
        if not matches:
            await throttle.failed(reservation)
            raise ApiError(403, "invalid_credentials", "the current password is wrong")
        await throttle.succeeded(reservation)
        password_hash = await services.passwords.hash(body.new_password)
        read = {"session_epoch": user.get("session_epoch"), "password_hash": user["password_hash"]}
        updated = await services.users.new_session_epoch(
            user["_id"], {"password_hash": password_hash}, unless_changed_from=read
        )
        if updated is None:
            if not await services.users.exists(user["_id"]):
                raise unauthorized("invalid_token", "the account no longer exists")
            raise ApiError(
                409,
                "account_changed",
                "the account changed while the password was being changed (a reset, "
                "another change, an administrator's): nothing was changed",
            )
        await self.end_sessions(updated, keep_jti=principal.jti)
        self._notify_password_changed(updated)

    def _notify_password_changed(self, user: dict[str, Any]) -> None:
        base = self.services.settings.public_base_url
        self.services.mailer.send(
            "password_changed",
            user["email"],
            link=f"{base}/",
            user=public_user(user),
            app_name=self.services.settings.mongodb_db,
            public_url=base,
        )

    async def end_sessions(self, user: dict[str, Any], keep_jti: str | None = None) -> None:
        """End every session of ``user`` (as just updated by ``new_session_epoch``) but
        the JWT ``keep_jti``: its JWTs of earlier epochs are revoked, its unused socket
        and reset tokens voided, and its sockets disconnected on every process (with
        ``keep_jti``, those of that session too: its client reconnects with a new
        socket token, which its JWT still gets)."""
        services = self.services
        user_id = str(user["_id"])
        until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=services.settings.jwt_ttl_seconds)
        try:
            await services.tokens.end_sessions(user_id, int(user["session_epoch"]), keep_jti, until)
            await services.nonces.discard_for_user(user_id, keep_jti)
            await services.reset_tokens.discard_for_user(user["_id"])
        finally:  # whatever came before (see log_out)
            await services.message_client.disconnectUsers(user_id)


def account_id(raw: str) -> ObjectId:
    """The id of an account in a path; 404 when it is not an id."""
    oid = parse_object_id(raw)
    if oid is None:
        raise ApiError(404, "not_found", "no such user")
    return oid
