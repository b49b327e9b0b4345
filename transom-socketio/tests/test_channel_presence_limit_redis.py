"""Join and leave past a presence channel's limit with REDIS_URL: the members counted
in Redis (realtime/redis_channel_presence.py)."""

from __future__ import annotations

from conftest import ON_REDIS

# Every test of test_channel_presence_limit.py, again with REDIS_URL.
from test_channel_presence_limit import *  # noqa: F403

pytestmark = ON_REDIS
