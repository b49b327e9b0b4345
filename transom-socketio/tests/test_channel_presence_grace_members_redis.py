"""A user in their leave grace is still a member of a presence channel, with REDIS_URL:
the end-to-end test of test_channel_presence_grace_members.py again, the members read
from Redis (realtime/redis_channel_presence.py)."""

from __future__ import annotations

from conftest import ON_REDIS
from test_channel_presence_grace_members import (
    test_a_user_back_within_the_grace_is_listed_to_who_came_meanwhile_and_never_left,  # noqa: F401
)

pytestmark = ON_REDIS
