"""Join and leave past a presence channel's limit with REDIS_URL: the members counted
in Redis (realtime/redis_channel_presence.py)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import REDIS_URL

# Every test of test_channel_presence_limit.py, again with REDIS_URL.
from test_channel_presence_limit import *  # noqa: F403

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    return {**test_settings, "redis_url": REDIS_URL}
