"""``GET /api/v1/channels/<channel>/presence``: who is in a presence channel.

Only for a caller who may subscribe to the channel (the app's rule for its pattern):
presence never lists a user to someone who may not be there. A malformed name answers
400 ``invalid_channel``, a channel the caller may not join 403 ``forbidden``, one
without presence 404. Members are those with at least one socket subscribed, on any
process, and those in their leave grace (no ``leave`` sent yet), with the public
fields the channel events carry (``_id``, ``username``, ``display_name``), at most
``MAX_MEMBERS``, and whether join and leave are sent in the channel (``join_leave``:
false past its pattern's ``join_leave_limit``; see realtime/channels.py). Requests
count with those of ``/api/v1/presence`` against PRESENCE_REQUESTS_PER_MINUTE_PER_USER
(per process).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from bson import ObjectId
from pydantic import Field

from ..ratelimit import RateLimiter
from ..realtime.channels import MEMBER_FIELDS, UNAVAILABLE, ChannelRefused
from ..shapes import ObjectIdOut, PublicShape
from .base import AuthenticatedHandler
from .errors import ApiError, too_many_requests
from .operations import operation
from .presence import PRESENCE_STORE_ERRORS

log = logging.getLogger(__name__)

__all__ = ["MAX_MEMBERS", "ChannelPresenceHandler"]

MAX_MEMBERS = 1000


class Member(PublicShape):
    id: ObjectIdOut = Field(alias="_id")
    username: str | None
    display_name: str | None


class ChannelMembers(PublicShape):
    channel: str
    members: Annotated[list[Member], Field(max_length=MAX_MEMBERS)]
    join_leave: bool = Field(
        description="Whether subscribers are sent join and leave in this channel now "
        "(false past the pattern's join_leave_limit)."
    )


class ChannelPresence(PublicShape):
    """The members of the channel"""

    presence: ChannelMembers


class ChannelPresenceHandler(AuthenticatedHandler):
    def initialize(self, per_user: RateLimiter) -> None:  # type: ignore[override]
        super().initialize()
        self.per_user = per_user

    @operation(
        "Who is in a presence channel",
        operation_id="channelPresence",
        description="For a caller who may subscribe to the channel; its members with at "
        "least one socket subscribed, on any process, and those in their leave grace (no "
        "`leave` sent yet).",
        auth=True,
        responses={200: ChannelPresence},
        errors={
            400: "`invalid_channel`",
            403: "`forbidden`",
            404: "",
            429: "",
            503: "`unavailable`: the channel's rule raised; `presence_unavailable`: the "
            "presence store did not answer.",
        },
        tags=("channels",),
    )
    async def get(self, channel: str) -> None:
        retry_after = self.per_user.hit(self.current_user.user_id)
        if retry_after is not None:
            raise too_many_requests(retry_after, "too many presence requests, retry later")
        manager = self.services.channels
        if manager is None:
            raise ApiError(404, "not_found", "this app has no channels")
        try:
            pattern = await manager.channels.authorize(self.current_user, channel)
        except ChannelRefused as refused:
            raise ApiError(400 if refused.code == "invalid_channel" else 403, refused.code,
                           refused.message) from None  # fmt: skip
        except Exception:  # the app's rule raised (its database read failed...): as a subscribe
            log.exception("presence of %r not answered: its rule raised", channel)
            raise ApiError(503, UNAVAILABLE.code, UNAVAILABLE.message) from None
        if not pattern.presence:
            raise ApiError(404, "not_found", "this channel keeps no presence")
        try:
            ids = await manager.members(channel, MAX_MEMBERS)
            mode = await manager.presence.join_leave(channel)
        except PRESENCE_STORE_ERRORS:
            raise ApiError(
                503, "presence_unavailable", "presence is not available, try again soon"
            ) from None
        listed = {"channel": channel, "members": await members(self, ids), "join_leave": mode.on}
        self.write_json({"presence": listed})


async def members(handler: AuthenticatedHandler, ids: list[str]) -> list[dict[str, Any]]:
    """The public member fields of ``ids``, in their order (unknown ids left out)."""
    wanted = [ObjectId(user_id) for user_id in ids if ObjectId.is_valid(user_id)]
    projection = dict.fromkeys(MEMBER_FIELDS, 1)
    cursor = handler.services.database["users"].find({"_id": {"$in": wanted}}, projection)
    found = {str(user["_id"]): user async for user in cursor}
    return [
        {"_id": user_id, **{field: found[user_id].get(field) for field in MEMBER_FIELDS}}
        for user_id in ids
        if user_id in found
    ]
