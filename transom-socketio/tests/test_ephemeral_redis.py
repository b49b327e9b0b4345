"""Ephemeral emits with REDIS_URL: they travel by the room manager's pub/sub, not the
history's stream, and are still never replayed."""

from __future__ import annotations

from conftest import ON_REDIS

# Every test of test_ephemeral.py, again with REDIS_URL (collected here under this
# module's fixtures).
from test_ephemeral import *  # noqa: F403

pytestmark = ON_REDIS
