"""Local accounts: sign-up, login, logout and socket tokens, as the app's handlers call them.

Each method does one user-facing step with every rule of it (throttles, password
hashing off the event loop, revocations), and raises an ``ApiError`` with the status
and code the client gets. The app's handlers (a generated app's ``auth.py``) stay
short: read the body, call one method, write the answer.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..ratelimit import address_key
from ..web.errors import ApiError, bad_request, too_many_requests, unauthorized
from .passwords import HashingBusy
from .shapes import Login, Signup
from .throttle import Throttled
from .tokens import Principal
from .users import EmailTaken, UsernameTaken, normalise_identifier, public_user

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["Accounts", "check_login_fields"]


def invalid_credentials() -> ApiError:
    # One answer for an unknown account and a wrong password.
    return ApiError(401, "invalid_credentials", "invalid username or password")


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
        """Create the account; its public fields. 429 past SIGNUPS_PER_ADDRESS, 409 for a
        taken email or username, 503 when password hashing is saturated."""
        services = self.services
        try:
            await services.signup_limit.reserve(client_ip)
        except Throttled as throttled:
            raise too_many_requests(
                throttled.retry_after, "too many sign-ups from this address, try again later"
            ) from None
        try:
            user = await services.users.create(
                email=body.email,
                password_hash=await services.passwords.hash(body.password),
                username=body.username,
                display_name=body.display_name,
            )
        except EmailTaken:
            raise ApiError(
                409, "email_taken", "an account with this email already exists"
            ) from None
        except UsernameTaken:
            raise ApiError(409, "username_taken", "this username is already taken") from None
        return public_user(user)

    async def log_in(self, body: Login, client_ip: str) -> dict[str, Any]:
        """Check the password under the login throttle; the Bearer JWT answer. 401
        ``invalid_credentials`` for an unknown account as for a wrong password."""
        services = self.services
        login = body.username or body.email or ""
        user = await services.users.find_by_login(login)
        # One budget per account whichever identifier was typed (SECURITY.md).
        account = f"user:{user['_id']}" if user else f"login:{normalise_identifier(login)}"
        throttle = services.login_throttle
        try:
            reservation = await throttle.reserve(account, client_ip)
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
            raise invalid_credentials()
        await throttle.succeeded(reservation, account, client_ip)
        if needs_rehash:
            with contextlib.suppress(HashingBusy):  # the upgrade can wait for the next login
                hashed = await services.passwords.hash(body.password)
                await services.users.set_password_hash(user["_id"], hashed)
        issued = services.tokens.issue(user)
        return {"token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in}

    async def log_out(self, principal: Principal) -> None:
        """Revoke the JWT, void its unused socket tokens, disconnect its sockets."""
        services = self.services
        await services.tokens.revoke(principal)
        await services.nonces.discard_for_jwt(principal.jti)
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
