"""The administration routes, for members of the ``admin`` group: list the users,
change a user's groups, end a user's sessions.

``python -m example_app createadmin`` creates the first
administrator. Changing a user's groups ends that user's sessions, so the groups a
JWT carries are always the user's own.
"""

from __future__ import annotations

from transom_socketio.auth.shapes import Groups, Success, User, UserPage
from transom_socketio.web.admin import (
    PAGE_PARAMETERS,
    USER_ID_PARAMETER,
    AdminHandler,
    page_arguments,
)
from transom_socketio.web.operations import Response, envelope, operation

UserEnvelope = envelope("user", User)


class UsersHandler(AdminHandler):
    @operation(
        "The users, newest first",
        operation_id="adminListUsers",
        auth=True,
        responses={200: UserPage},
        errors=(400, 403, 503),
        tags=("admin",),
        parameters=PAGE_PARAMETERS,
    )
    async def get(self) -> None:
        before, limit = page_arguments(self)
        self.write_json(await self.services.admin.list_users(before, limit))


class UserGroupsHandler(AdminHandler):
    @operation(
        "Replace a user's groups (their sessions end)",
        operation_id="adminSetGroups",
        auth=True,
        body=Groups,
        responses={200: Response("the user", UserEnvelope)},
        errors={
            403: "",
            404: "",
            409: "`last_admin`: it would leave no administrator; `groups_changing`: "
            "another change of this user's groups did not end in time. Nothing was changed.",
            503: "",
        },
        tags=("admin",),
        parameters=(USER_ID_PARAMETER,),
    )
    async def put(self, user_id: str) -> None:
        groups = self.json_body(Groups).groups
        self.write_json({"user": await self.services.admin.set_groups(user_id, groups)})


class UserLogoutHandler(AdminHandler):
    @operation(
        "End every session of a user: JWTs revoked, sockets closed",
        operation_id="adminLogoutUser",
        auth=True,
        responses={200: Success},
        errors=(403, 404, 413, 503),
        tags=("admin",),
        parameters=(USER_ID_PARAMETER,),
    )
    async def post(self, user_id: str) -> None:
        await self.services.admin.log_out(user_id)
        self.write_json({"success": True})
