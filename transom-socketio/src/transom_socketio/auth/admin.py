"""Administration of accounts: the steps the admin API's handlers call, and the first
administrator (``python -m <app> createadmin``).

An administrator is a member of the group ``admin`` (``Principal.is_admin``). Changing
a user's groups ends every session of that user, so the groups a JWT carries are the
user's groups: a user removed from a group loses its rights at once (its sockets are
disconnected too), and one added to a group gets them at the next login.
"""

from __future__ import annotations

import asyncio
import time
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

# How long a change of a user's groups waits for another one of the same user to end.
CHANGE_WAIT_SECONDS = 2.0


def require_admin(principal: Principal) -> None:
    """403 ``forbidden`` unless the caller is an administrator."""
    if not principal.is_admin:
        raise ApiError(403, "forbidden", f"only members of the {ADMIN_GROUP!r} group may do this")


def no_such_user() -> ApiError:
    return ApiError(404, "not_found", "no such user")


def groups_changing() -> ApiError:
    return ApiError(
        409, "groups_changing", "another change of this user's groups is in progress: try again"
    )


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
        ``last_admin``, and nothing changed, when it would leave no administrator.

        The groups are written first, marked as a change in progress, then, if the user
        was an administrator and is no longer one, an administrator left is looked for;
        if none is, the groups are put back and the change refused. Written before it
        looks, so of two administrators removing each other at once, the later look
        sees both writes: one or both are refused, never both let through. Two changes
        of one user's groups take turns (``_begin``)."""
        unique = list(dict.fromkeys(groups))
        user_id = account_id(raw_id)
        users = self.services.users
        change = ObjectId()
        before = await self._begin(user_id, unique, change)
        was_admin = ADMIN_GROUP in before.get("groups", ())
        if was_admin and ADMIN_GROUP not in unique and not await users.has_member(ADMIN_GROUP):
            await users.undo_groups_change(user_id, change, before.get("groups", []))
            raise ApiError(
                409,
                "last_admin",
                f"this would leave no member of {ADMIN_GROUP!r}: make another one first",
            )
        user = await users.end_groups_change(user_id, change)
        if user is None:  # abandoned, by a process too slow to be trusted with it
            raise groups_changing()
        await self.services.accounts.end_sessions(user)
        return public_user(user)

    async def _begin(
        self, user_id: ObjectId, groups: list[str], change: ObjectId
    ) -> dict[str, Any]:
        """Begin the change, after the one in progress for this user if there is one
        (a change takes milliseconds: a double submit waits rather than fails); the user
        as it was. 404 for no such user; 409 ``groups_changing`` if the other change has
        not ended within ``CHANGE_WAIT_SECONDS``."""
        users = self.services.users
        deadline = time.monotonic() + CHANGE_WAIT_SECONDS
        pause = 0.01
        while True:
            before = await users.begin_groups_change(user_id, groups, change)
            if before is not None:
                return before
            if not await users.exists(user_id):
                raise no_such_user()
            if time.monotonic() + pause > deadline:
                raise groups_changing()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

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
