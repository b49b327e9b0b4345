"""REST handlers: signup, login, logout, me, and socket-token issue."""

from __future__ import annotations

import contextlib
from typing import Any

from ..ratelimit import address_key
from ..web.base import AuthenticatedHandler, BaseHandler
from ..web.errors import ApiError, bad_request, too_many_requests, unauthorized
from ..web.operations import Response, envelope, operation
from .passwords import HashingBusy
from .shapes import LoggedOut, Login, LoginResult, Signup, SocketToken, User
from .throttle import Throttled
from .users import (
    EmailTaken,
    UsernameTaken,
    normalise_identifier,
    public_user,
)


def invalid_credentials() -> ApiError:
    # One answer for an unknown account and a wrong password.
    return ApiError(401, "invalid_credentials", "invalid username or password")


UserEnvelope = envelope("user", User)
MeEnvelope = envelope("me", User)


class SignupHandler(BaseHandler):
    @operation(
        "Create an account",
        operation_id="signup",
        body=Signup,
        responses={201: Response("the new account", UserEnvelope)},
        errors=(409, 429, 503),
    )
    async def post(self) -> None:
        body = self.json_body(Signup)
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
                email=body.email,
                password_hash=await passwords.hash(body.password),
                username=body.username,
                display_name=body.display_name,
            )
        except EmailTaken:
            raise ApiError(
                409, "email_taken", "an account with this email already exists"
            ) from None
        except UsernameTaken:
            raise ApiError(409, "username_taken", "this username is already taken") from None
        self.write_json({"user": public_user(user)}, status=201)


class LoginHandler(BaseHandler):
    @operation(
        "Log in: a Bearer JWT",
        operation_id="login",
        body=Login,
        responses={200: LoginResult},
        errors={401: "`invalid_credentials`, for an unknown account too.", 429: "", 503: ""},
    )
    async def post(self) -> None:
        raw = self.json_body()
        unknown = set(raw) - set(Login.model_fields)  # named first, by json_body(Login)
        if not unknown and raw.get("username") is None and raw.get("email") is None:
            raise bad_request("email is required", field="email")
        body = self.json_body(Login)
        login = body.username or body.email or ""
        password = body.password

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
    @operation(
        "Revoke this JWT and disconnect the sockets opened with it",
        operation_id="logout",
        auth=True,
        responses={200: LoggedOut},
        errors=(413, 503),
    )
    async def post(self) -> None:
        tokens = self.services.tokens
        nonces = self.services.nonces
        await tokens.revoke(self.current_user)
        await nonces.discard_for_jwt(self.current_user.jti)
        await self.services.message_client.disconnect_token(self.current_user.jti)
        self.write_json({"success": True})


class MeHandler(AuthenticatedHandler):
    @operation(
        "The caller's account",
        operation_id="me",
        auth=True,
        responses={200: Response("the account", MeEnvelope)},
        errors=(503,),
    )
    async def get(self) -> None:
        users = self.services.users
        user = await users.get(self.current_user.user_id)
        if user is None:
            raise unauthorized("invalid_token", "the account no longer exists")
        self.write_json({"me": public_user(user)})


SOCKET_TOKEN: dict[str, Any] = {
    "summary": "A one-time socket token for the Socket.IO handshake",
    "description": "Valid SOCKET_TOKEN_TTL_SECONDS, usable once, voided at logout.",
    "auth": True,
    "responses": {200: SocketToken},
}


class SocketTokenHandler(AuthenticatedHandler):
    head_like_get = False  # its GET issues a token: HEAD answers 405

    @operation(**SOCKET_TOKEN, operation_id="getSocketToken", errors=(429, 503))
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
        position = await self.services.message_client.position()
        self.write_json(
            {"token": issued.token, "expires_in": issued.expires_in, "position": position}
        )

    @operation(**SOCKET_TOKEN, operation_id="postSocketToken", errors=(413, 429, 503))
    async def post(self) -> None:
        await self.get()
