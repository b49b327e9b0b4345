"""``GET /api/v1/presence?users=<id>,<id>``: who of these users is online.

Any signed-in user may see any user's presence: in this app anyone may message
anyone, and the ``presence`` event already tells every socket who comes and goes
(SECURITY.md). Narrow it here (for example to users the caller exchanged
messages with) if your product needs more privacy.
"""

from __future__ import annotations
{%- if cookiecutter.message_queue == "redis" %}

import redis
{%- endif %}

from .. import registry as keys
from .base import AuthenticatedHandler
from .errors import {% if cookiecutter.message_queue == "redis" %}ApiError, {% endif %}bad_request

MAX_USERS = 100
HEX = frozenset("0123456789abcdefABCDEF")


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
    async def get(self) -> None:
        ids = parse_user_ids(self.get_query_arguments("users", strip=False))
{%- if cookiecutter.message_queue == "redis" %}
        try:
            presence = await self.registry[keys.MESSAGE_CLIENT].presence(ids)
        except redis.RedisError:
            raise ApiError(
                503, "presence_unavailable", "presence is not available, try again soon"
            ) from None
{%- else %}
        presence = await self.registry[keys.MESSAGE_CLIENT].presence(ids)
{%- endif %}
        self.write_json({"presence": presence})
