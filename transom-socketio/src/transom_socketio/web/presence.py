"""``GET /api/v1/presence?users=<id>,<id>``: who of these users is online.

Any signed-in user may see any user's presence: in this app anyone may message
anyone, and the ``presence`` event already tells every socket who comes and goes
(SECURITY.md). Narrow it here (for example to users the caller exchanged
messages with) if your product needs more privacy.

One request costs one round trip to the presence store however many users it names
(at most ``MAX_USERS``), and each user may make PRESENCE_REQUESTS_PER_MINUTE_PER_USER
of them (per process), else 429.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from ..ratelimit import RateLimiter
from ..shapes import PublicShape
from .base import AuthenticatedHandler
from .errors import ApiError, bad_request, too_many_requests
from .operations import operation

MAX_USERS = 100
HEX = frozenset("0123456789abcdefABCDEF")
USER_IDS = "[0-9a-fA-F]{24}"


try:  # the redis extra: its presence store raises RedisError when Redis does not answer
    from redis import RedisError

    PRESENCE_STORE_ERRORS: tuple[type[Exception], ...] = (RedisError,)
except ImportError:  # pragma: no cover - without the extra, presence is in memory
    PRESENCE_STORE_ERRORS = ()


class UserPresence(PublicShape):
    online: bool
    sockets: Annotated[int, Field(ge=0)]


class PresenceAnswer(PublicShape):
    """presence by user id"""

    presence: dict[Annotated[str, StringConstraints(pattern="^[0-9a-f]{24}$")], UserPresence]


def parse_user_ids(values: list[str]) -> list[str]:
    """The ``users`` parameter: 1 to MAX_USERS comma-separated 24-hex ids, once."""
    if len(values) != 1:
        raise bad_request("give the users parameter exactly once", field="users")
    ids = values[0].split(",")
    if not values[0] or len(ids) > MAX_USERS:
        raise bad_request(f"users must list 1 to {MAX_USERS} user ids", field="users")
    if any(len(uid) != 24 or not set(uid) <= HEX for uid in ids):
        raise bad_request("users must be comma-separated 24-hex-digit user ids", field="users")
    return list(dict.fromkeys(uid.lower() for uid in ids))


class PresenceHandler(AuthenticatedHandler):
    def initialize(self, per_user: RateLimiter) -> None:  # type: ignore[override]
        super().initialize()
        self.per_user = per_user

    @operation(
        "Which of these users are online, with how many sockets",
        operation_id="presence",
        description="Any signed-in user may ask about any user (SECURITY.md).",
        auth=True,
        responses={200: PresenceAnswer},
        errors=(400, 429, 503),
        tags=("user",),
        parameters=(
            {
                "name": "users",
                "in": "query",
                "required": True,
                "description": f"1 to {MAX_USERS} comma-separated user ids",
                "schema": {"type": "string", "pattern": f"^{USER_IDS}(,{USER_IDS})*$"},
            },
        ),
    )
    async def get(self) -> None:
        ids = parse_user_ids(self.get_query_arguments("users", strip=False))
        retry_after = self.per_user.hit(self.current_user.user_id)
        if retry_after is not None:
            raise too_many_requests(retry_after, "too many presence requests, retry later")
        try:
            presence = await self.services.message_client.presence(ids)
        except PRESENCE_STORE_ERRORS:
            raise ApiError(
                503, "presence_unavailable", "presence is not available, try again soon"
            ) from None
        self.write_json({"presence": presence})
