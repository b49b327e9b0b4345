"""Administration of accounts: the steps the admin API's handlers call, and the first
administrator (``python -m <app> createadmin``).

An administrator is a member of the group ``admin`` (``Principal.is_admin``). Changing
a user's groups ends every session of that user, so the groups a JWT carries are the
user's groups: a user removed from a group loses its rights at once (its sockets are
disconnected too), and one added to a group gets them at the next login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bson import ObjectId

from ..web.errors import ApiError
from .accounts import account_id
from .shapes import Signup
from .tokens import ADMIN_GROUP, Principal
from .users import public_user

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["Administration", "CreateAdminError", "require_admin"]


def require_admin(principal: Principal) -> None:
    """403 ``forbidden`` unless the caller is an administrator."""
    if not principal.is_admin:
        raise ApiError(403, "forbidden", f"only members of the {ADMIN_GROUP!r} group may do this")


def no_such_user() -> ApiError:
    return ApiError(404, "not_found", "no such user")


class CreateAdminError(Exception):
    """``createadmin`` cannot create the account; the message is one line."""


class Administration:
    """The administration steps of one app, on its services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def list_users(self, before: ObjectId | None, limit: int) -> dict[str, Any]:
        """A page of users, newest first: ``{"users": [...], "next": <id> | None}``."""
        page = await self.services.users.page(before, limit)
        return {"users": [public_user(user) for user in page.documents], "next": page.next}

    async def set_groups(self, raw_id: str, groups: list[str]) -> dict[str, Any]:
        """Replace the user's groups and end their sessions; their public fields. 409
        ``last_admin``, and nothing changed, when it would leave no administrator."""
        unique = list(dict.fromkeys(groups))
        user_id = account_id(raw_id)
        if ADMIN_GROUP not in unique:
            await self._keep_an_administrator(user_id, unique)
        user = await self.services.users.new_session_epoch(user_id, {"groups": unique})
        if user is None:
            raise no_such_user()
        await self.services.accounts.end_sessions(user)
        return public_user(user)

    async def _keep_an_administrator(self, user_id: ObjectId, groups: list[str]) -> None:
        """Write ``groups`` (without ``admin``), then look for an administrator left; if
        none is, put the user's groups back and refuse. Written before it looks, so of
        two administrators removing each other at once, the later look sees both
        writes: one or both are refused, never both let through."""
        users = self.services.users
        before = await users.replace_groups(user_id, groups)
        if before is None:
            raise no_such_user()
        if ADMIN_GROUP in before.get("groups", ()) and not await users.has_member(ADMIN_GROUP):
            await users.restore_groups(user_id, groups, before.get("groups", []))
            raise ApiError(
                409,
                "last_admin",
                f"this would leave no member of {ADMIN_GROUP!r}: make another one first",
            )

    async def log_out(self, raw_id: str) -> None:
        """End every session of the user: JWTs revoked, sockets disconnected."""
        user = await self.services.users.new_session_epoch(account_id(raw_id))
        if user is None:
            raise no_such_user()
        await self.services.accounts.end_sessions(user)

    async def create_admin(self, body: Signup) -> dict[str, Any]:
        """A verified account in the ``admin`` group (``createadmin``)."""
        try:
            user = await self.services.accounts.create(body, verified=True, groups=(ADMIN_GROUP,))
        except ApiError as error:  # a taken email or username
            raise CreateAdminError(error.message) from None
        return public_user(user)
