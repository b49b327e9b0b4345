"""The bodies and answers of the user API, each written once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ..shapes import DateTimeOut, ObjectIdOut, PublicShape, Shape, Text
from .nonces import TOKEN_SHAPE
from .passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .users import EMAIL_RULE, USERNAME_RULE

__all__ = ["LoggedOut", "Login", "LoginResult", "Signup", "SocketToken", "User"]

LOGIN_NAME = Text(max_length=254)


class Signup(Shape):
    email: Annotated[
        str, Text(max_length=254, pattern=EMAIL_RULE, rule="must be a valid email address")
    ]
    password: Annotated[
        str,
        Text(
            min_length=MIN_PASSWORD_LENGTH,
            max_length=MAX_PASSWORD_LENGTH,
            strip=False,
            printable=False,
        ),
    ]
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
    display_name: Annotated[str, Text(max_length=100)] | None = None


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
    password: Annotated[str, Text(max_length=MAX_PASSWORD_LENGTH, strip=False, printable=False)]


class User(PublicShape):
    """An account as anyone may see it (never the password hash)."""

    id: ObjectIdOut = Field(alias="_id")
    username: str
    email: str
    display_name: str
    groups: list[str]
    created_at: DateTimeOut


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
