"""A user in their leave grace is still a member of a presence channel, with REDIS_URL:
the end-to-end test of test_channel_presence_grace_members.py again, the members read
from Redis (realtime/redis_channel_presence.py)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import REDIS_URL
from test_channel_presence_grace_members import (
    test_a_user_back_within_the_grace_is_listed_to_who_came_meanwhile_and_never_left,  # noqa: F401
)

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    return {**test_settings, "redis_url": REDIS_URL}
