"""The account routes: sign-up, login, logout, me, one-time socket tokens, email
verification, and password reset and change.

Each handler reads its body (one pydantic model, which also documents it in
``/openapi.json``), calls one step of ``self.services.accounts`` (throttles, password
hashing, revocations live there) and writes the answer. Change what a route answers or
does around that step here; the ``@operation`` beside it keeps the document in step.
"""

from __future__ import annotations

from typing import Any

from transom_socketio.auth.accounts import check_login_fields
from transom_socketio.auth.shapes import (
    ChangePassword,
    EmailAddress,
    LoggedOut,
    Login,
    LoginResult,
    ResetPassword,
    Signup,
    SocketToken,
    Success,
    User,
    VerifyEmail,
)
from transom_socketio.web.base import AuthenticatedHandler, BaseHandler
from transom_socketio.web.operations import Response, envelope, operation

UserEnvelope = envelope("user", User)
MeEnvelope = envelope("me", User)


class SignupHandler(BaseHandler):
    @operation(
        "Create an account",
        operation_id="signup",
        body=Signup,
        description="Mails a verification link to the address (PUBLIC_URL/verify?token=...).",
        responses={201: Response("the new account", UserEnvelope)},
        errors=(409, 429, 503),
    )
    async def post(self) -> None:
        user = await self.services.accounts.sign_up(self.json_body(Signup), self.client_ip)
        self.write_json({"user": user}, status=201)


class LoginHandler(BaseHandler):
    @operation(
        "Log in: a Bearer JWT",
        operation_id="login",
        body=Login,
        responses={200: LoginResult},
        errors={
            401: "`invalid_credentials`, for an unknown account too.",
            403: "`email_not_verified`: the password is right, the address not verified yet.",
            429: "",
            503: "",
        },
    )
    async def post(self) -> None:
        check_login_fields(self.json_body())
        body = self.json_body(Login)
        self.write_json(await self.services.accounts.log_in(body, self.client_ip))


class LogoutHandler(AuthenticatedHandler):
    @operation(
        "Revoke this JWT and disconnect the sockets opened with it",
        operation_id="logout",
        auth=True,
        responses={200: LoggedOut},
        errors=(413, 503),
    )
    async def post(self) -> None:
        await self.services.accounts.log_out(self.current_user)
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
        self.write_json({"me": await self.services.accounts.me(self.current_user)})


SOCKET_TOKEN: dict[str, Any] = {
    "summary": "A one-time socket token for the Socket.IO handshake",
    "description": "Valid SOCKET_TOKEN_TTL_SECONDS, usable once, voided at logout.",
    "auth": True,
    "responses": {200: SocketToken},
}


class SocketTokenHandler(AuthenticatedHandler):
    head_like_get = False  # its GET issues a token: HEAD answers 405
    # With sockets in one process, a JWT this process found live (at login, or on a
    # request) is not read again unless it or its user's sessions ended since: the
    # token's handshake asks the same (transom_socketio/web/base.py).
    recent_revocation_check_will_do = True

    @operation(**SOCKET_TOKEN, operation_id="getSocketToken", errors=(429, 503))
    async def get(self) -> None:
        accounts = self.services.accounts
        self.write_json(await accounts.socket_token(self.current_user, self.client_ip))

    @operation(**SOCKET_TOKEN, operation_id="postSocketToken", errors=(413, 429, 503))
    async def post(self) -> None:
        await self.get()


# The answer of the mail requests: the same whether or not the address has an account.
MAIL_REQUESTED = Response("accepted: a mail goes out if the address has an account", Success)


class VerifyEmailHandler(BaseHandler):
    @operation(
        "Verify an email address with the token of its mailed link",
        operation_id="verifyEmail",
        body=VerifyEmail,
        responses={200: Success},
        errors={400: "`invalid_token`: unknown, used or expired.", 429: "", 503: ""},
    )
    async def post(self) -> None:
        await self.services.accounts.verify_email(self.json_body(VerifyEmail), self.client_ip)
        self.write_json({"success": True})


class ResendVerificationHandler(BaseHandler):
    @operation(
        "Mail a new verification link",
        operation_id="resendVerification",
        body=EmailAddress,
        responses={202: MAIL_REQUESTED},
        errors=(429, 503),
    )
    async def post(self) -> None:
        body = self.json_body(EmailAddress)
        await self.services.accounts.resend_verification(body, self.client_ip)
        self.write_json({"success": True}, status=202)


class ForgotPasswordHandler(BaseHandler):
    @operation(
        "Mail a password-reset link",
        operation_id="forgotPassword",
        description="The link (PUBLIC_URL/reset?token=...) works once, for "
        "RESET_TOKEN_TTL_SECONDS.",
        body=EmailAddress,
        responses={202: MAIL_REQUESTED},
        errors=(429, 503),
    )
    async def post(self) -> None:
        body = self.json_body(EmailAddress)
        await self.services.accounts.forgot_password(body, self.client_ip)
        self.write_json({"success": True}, status=202)


class ResetPasswordHandler(BaseHandler):
    @operation(
        "Set a new password with the token of a reset mail",
        operation_id="resetPassword",
        description="Every JWT of the user is revoked and every socket of theirs closed.",
        body=ResetPassword,
        responses={200: Success},
        errors={400: "`invalid_token`, or an invalid password.", 429: "", 503: ""},
    )
    async def post(self) -> None:
        await self.services.accounts.reset_password(self.json_body(ResetPassword), self.client_ip)
        self.write_json({"success": True})


class ChangePasswordHandler(AuthenticatedHandler):
    @operation(
        "Change the password",
        operation_id="changePassword",
        description="The caller's other JWTs are revoked and the user's sockets closed "
        "(this JWT's reconnect with a new socket token).",
        auth=True,
        body=ChangePassword,
        responses={200: Success},
        errors={
            403: "`invalid_credentials`: the current password is wrong.",
            409: "`account_changed`: a reset, another change or an administrator changed "
            "the account meanwhile; nothing was changed.",
            429: "",
            503: "",
        },
    )
    async def post(self) -> None:
        body = self.json_body(ChangePassword)
        await self.services.accounts.change_password(self.current_user, body, self.client_ip)
        self.write_json({"success": True})
