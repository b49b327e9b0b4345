"""REST handlers: signup, login, logout, me, and socket-token issue (SPEC §6)."""

from __future__ import annotations

import contextlib
from typing import Any

from ..ratelimit import address_key
from ..web import validation
from ..web.base import AuthenticatedHandler, BaseHandler
from ..web.errors import ApiError, too_many_requests, unauthorized
from .passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, HashingBusy
from .throttle import Throttled
from .users import (
    EMAIL_RULE,
    USERNAME_RULE,
    EmailTaken,
    UsernameTaken,
    normalise_identifier,
    public_user,
)


def invalid_credentials() -> ApiError:
    # One answer for an unknown account and a wrong password.
    return ApiError(401, "invalid_credentials", "invalid username or password")


def _password(body: dict[str, Any]) -> str:
    return validation.required_text(
        body,
        "password",
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        printable=False,
    )


class SignupHandler(BaseHandler):
    async def post(self) -> None:
        body = self.json_body()
        validation.only_fields(body, {"email", "password", "username", "display_name"})
        email = validation.required_text(
            body, "email", max_length=254, pattern=EMAIL_RULE, rule="must be a valid email address"
        )
        password = _password(body)
        username = validation.text(
            body,
            "username",
            required=False,
            pattern=USERNAME_RULE,
            max_length=32,
            rule="must be 3-32 letters, digits, '_', '.' or '-', starting with a letter, "
            "digit or '_'",
        )
        display_name = validation.text(body, "display_name", required=False, max_length=100)
        limit = self.services.signup_limit
        try:
            await limit.reserve(self.client_ip)
        except Throttled as throttled:
            raise too_many_requests(
                throttled.retry_after, "too many sign-ups from this address, try again later"
            ) from None
        passwords = self.services.passwords
        users = self.services.users
        try:
            user = await users.create(
                email=email,
                password_hash=await passwords.hash(password),
                username=username,
                display_name=display_name,
            )
        except EmailTaken:
            raise ApiError(
                409, "email_taken", "an account with this email already exists"
            ) from None
        except UsernameTaken:
            raise ApiError(409, "username_taken", "this username is already taken") from None
        self.write_json({"user": public_user(user)}, status=201)


class LoginHandler(BaseHandler):
    async def post(self) -> None:
        body = self.json_body()
        validation.only_fields(body, {"username", "email", "password"})
        field = "username" if body.get("username") is not None else "email"
        login = validation.required_text(body, field, max_length=254)
        password = validation.required_text(
            body, "password", max_length=MAX_PASSWORD_LENGTH, strip=False, printable=False
        )

        users = self.services.users
        passwords = self.services.passwords
        throttle = self.services.login_throttle
        user = await users.find_by_login(login)
        # One budget per account whichever identifier was typed (SECURITY.md).
        account = f"user:{user['_id']}" if user else f"login:{normalise_identifier(login)}"
        try:
            reservation = await throttle.reserve(account, self.client_ip)
        except Throttled as throttled:
            raise too_many_requests(
                throttled.retry_after, "too many failed logins, try again later"
            ) from None
        try:
            matches, needs_rehash = await passwords.verify(
                user.get("password_hash") if user else None, password
            )
        except HashingBusy:
            await throttle.release(reservation)  # no password was evaluated: 503, retry
            raise
        if user is None or not matches:
            raise invalid_credentials()
        await throttle.succeeded(reservation, account, self.client_ip)
        if needs_rehash:
            with contextlib.suppress(HashingBusy):  # the upgrade can wait for the next login
                await users.set_password_hash(user["_id"], await passwords.hash(password))

        tokens = self.services.tokens
        issued = tokens.issue(user)
        self.write_json(
            {"token": issued.token, "token_type": "Bearer", "expires_in": issued.expires_in}
        )


class LogoutHandler(AuthenticatedHandler):
    async def post(self) -> None:
        tokens = self.services.tokens
        nonces = self.services.nonces
        await tokens.revoke(self.current_user)
        await nonces.discard_for_jwt(self.current_user.jti)
        await self.services.message_client.disconnect_token(self.current_user.jti)
        self.write_json({"success": True})


class MeHandler(AuthenticatedHandler):
    async def get(self) -> None:
        users = self.services.users
        user = await users.get(self.current_user.user_id)
        if user is None:
            raise unauthorized("invalid_token", "the account no longer exists")
        self.write_json({"me": public_user(user)})


class SocketTokenHandler(AuthenticatedHandler):
    async def get(self) -> None:
        limits = self.services.socket_token_limits
        retry_after = limits.per_user.hit(self.current_user.user_id) or limits.per_address.hit(
            address_key(self.client_ip)
        )
        if retry_after is not None:
            raise too_many_requests(retry_after, "too many socket tokens requested, retry later")
        nonces = self.services.nonces
        issued = await nonces.issue(self.current_user)
        self.services.metrics.socket_tokens_issued.inc()
        self.write_json({"token": issued.token, "expires_in": issued.expires_in})

    post = get
