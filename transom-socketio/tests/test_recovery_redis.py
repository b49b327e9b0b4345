"""Recovery with REDIS_URL: the history is a Redis stream (realtime/redis_history.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL

# Every test of test_recovery.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_recovery import *  # noqa: F403
from test_recovery import recovering

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    return {**test_settings, "redis_url": REDIS_URL}


@pytest.mark.gen_test(timeout=60)
async def test_when_redis_loses_the_history_connected_clients_are_told_to_reload(
    app, api, base_url, registry, settings, clients
):
    """A stream lost with Redis (a restart without persistence, a failover): the next
    entry does not follow the last one delivered, so this process closes its sockets'
    transports; their clients reconnect and are told the recovery is incomplete."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    await msg.emitToUsers(client.user.id, "tick", {"n": 0})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await redis.delete(f"{settings.redis_channel}:history")
    finally:
        await redis.aclose()
    await msg.emitToUsers(client.user.id, "tick", {"n": 1})
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    assert client.connects == 2
