"""The edits of recovery (test_recovery_edits.py) with REDIS_URL: the history is a Redis
stream and its edits Redis keys (realtime/redis_history.py)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import REDIS_URL

# Every test of test_recovery_edits.py, again with REDIS_URL (collected here under this
# module's fixtures).
from test_recovery_edits import *  # noqa: F403

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    return {**test_settings, "redis_url": REDIS_URL}
