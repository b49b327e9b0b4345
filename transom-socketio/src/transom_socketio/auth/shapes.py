"""The bodies and answers of the user API, each written once."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ..shapes import DateTimeOut, ObjectIdOut, PublicShape, Shape, Text
from .nonces import TOKEN_SHAPE
from .passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .users import EMAIL_RULE, GROUP_RULE, MAX_GROUPS, USERNAME_RULE

__all__ = [
    "ChangePassword",
    "EmailAddress",
    "Groups",
    "LoggedOut",
    "Login",
    "LoginResult",
    "ResetPassword",
    "Signup",
    "SocketToken",
    "Success",
    "User",
    "UserPage",
    "VerifyEmail",
]

LOGIN_NAME = Text(max_length=254)
EMAIL = Text(max_length=254, pattern=EMAIL_RULE, rule="must be a valid email address")
NEW_PASSWORD = Text(
    min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH, strip=False, printable=False
)
ANY_PASSWORD = Text(max_length=MAX_PASSWORD_LENGTH, strip=False, printable=False)
# A mailed token; one of another shape is answered like an unknown one (invalid_token).
MAILED_TOKEN = Text(max_length=256)
# One line: no line or paragraph break (checked after trimming, and ECMA 262 too).
ONE_LINE_RULE = re.compile(r"^[^\r\n\u2028\u2029\u202a-\u202e\u2066-\u2069]*$")
# A name shown to other users: one line, in its own writing direction. (Line and
# paragraph breaks would let whoever signs up write paragraphs wherever the name is
# shown; bidirectional overrides and isolates, text that reads otherwise than it is.)
DISPLAY_NAME = Text(
    max_length=100, pattern=ONE_LINE_RULE, rule="must be one line, without direction overrides"
)
GROUP = Text(
    max_length=64,
    pattern=GROUP_RULE,
    rule="must be 1-64 lower-case letters, digits, '_' or '-', starting with a letter or digit",
)


class Signup(Shape):
    email: Annotated[str, EMAIL]
    password: Annotated[str, NEW_PASSWORD]
    username: (
        Annotated[
            str,
            Text(
                max_length=32,
                pattern=USERNAME_RULE,
                rule="must be 3-32 letters, digits, '_', '.' or '-', starting with a letter, "
                "digit or '_'",
            ),
        ]
        | None
    ) = None
    display_name: Annotated[str, DISPLAY_NAME] | None = None


class Login(Shape):
    """`username` (a username or an email) or `email`; `username` wins."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [key], "properties": {key: LOGIN_NAME.json_schema()}}
                for key in ("username", "email")
            ]
        }
    )

    username: Annotated[str, LOGIN_NAME] | None = None
    email: Annotated[str, LOGIN_NAME] | None = None
    password: Annotated[str, ANY_PASSWORD]


class VerifyEmail(Shape):
    """The token of a verification mail's link."""

    token: Annotated[str, MAILED_TOKEN]


class EmailAddress(Shape):
    """An address to mail (a verification mail again, or a password reset)."""

    email: Annotated[str, EMAIL]


class ResetPassword(Shape):
    """The token of a reset mail's link, and the new password."""

    token: Annotated[str, MAILED_TOKEN]
    password: Annotated[str, NEW_PASSWORD]


class ChangePassword(Shape):
    current_password: Annotated[str, ANY_PASSWORD]
    new_password: Annotated[str, NEW_PASSWORD]


class Groups(Shape):
    """The complete list of the user's groups (``admin``: the administration API)."""

    groups: Annotated[list[Annotated[str, GROUP]], Field(max_length=MAX_GROUPS)]


class User(PublicShape):
    """An account as anyone may see it (never the password hash)."""

    id: ObjectIdOut = Field(alias="_id")
    username: str
    email: str
    display_name: str
    groups: list[str]
    verified: bool
    created_at: DateTimeOut


class UserPage(PublicShape):
    """A page of users, newest first"""

    users: list[User]
    next: str | None = Field(description="Pass as `before` for the next page; null at the end.")


class LoginResult(PublicShape):
    """The JWT"""

    token: str = Field(description="a JWT (HS256)")
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=1)


class SocketToken(PublicShape):
    """The token"""

    token: str = Field(pattern=TOKEN_SHAPE.pattern)
    expires_in: int = Field(ge=1)
    position: str | None = Field(
        description="The newest message position when the token was issued (null with "
        "recovery off): connect with it in auth.position to receive everything emitted "
        "since, if you have no newer position."
    )


class LoggedOut(PublicShape):
    """Logged out"""

    success: Literal[True]


class Success(PublicShape):
    """Done"""

    success: Literal[True]
