"""The edits of recovery (test_recovery_edits.py) with REDIS_URL: the history is a Redis
stream and its edits Redis keys (realtime/redis_history.py)."""

from __future__ import annotations

from conftest import ON_REDIS

# Every test of test_recovery_edits.py, again with REDIS_URL (collected here under this
# module's fixtures).
from test_recovery_edits import *  # noqa: F403

pytestmark = ON_REDIS
