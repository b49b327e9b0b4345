"""Socket counts with REDIS_URL: one app here; the processes are simulated on the store
(two ``RedisPresence`` on one channel), and a dead process stops counting."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from conftest import ON_REDIS, REDIS_URL

# Every test of test_presence_counts.py, again with REDIS_URL.
from test_presence_counts import *  # noqa: F403

from transom_socketio.realtime.presence import OnlineCounts
from transom_socketio.realtime.redis_presence import FORGOTTEN_AFTER_HEARTBEATS, RedisPresence

pytestmark = ON_REDIS

HEARTBEAT_SECONDS = 10


@pytest.mark.gen_test(timeout=30)
async def test_online_counts_each_user_once_and_only_live_processes(settings):
    first, second, third = (
        RedisPresence(REDIS_URL, settings.redis_channel, HEARTBEAT_SECONDS) for _ in range(3)
    )
    redis = aioredis.Redis.from_url(REDIS_URL)
    processes = f"{settings.redis_channel}:presence:processes"
    try:
        await first.connected("a" * 24)
        await second.connected("a" * 24)
        await second.connected("b" * 24)
        await second.connected("b" * 24)
        for presence in (first, second):
            assert await presence.online() == OnlineCounts(users=2, sockets=4)
            assert await presence.counts(["a" * 24, "b" * 24]) == {"a" * 24: 2, "b" * 24: 2}
        await second.disconnected("b" * 24, "mark")
        assert await first.online() == OnlineCounts(users=2, sockets=3)

        # The second process stops beating: past 3 heartbeats its sockets stop counting...
        now = int((await redis.time())[0])
        await redis.zadd(processes, {second._process: now - 3 * HEARTBEAT_SECONDS - 1})
        assert await first.online() == OnlineCounts(users=1, sockets=1)
        assert await first.counts(["a" * 24, "b" * 24]) == {"a" * 24: 1, "b" * 24: 0}
        # ...and once forgotten, the next heartbeat of another one deletes what it kept.
        forgotten = now - FORGOTTEN_AFTER_HEARTBEATS * HEARTBEAT_SECONDS - 1
        await redis.zadd(processes, {second._process: forgotten})
        await first._heartbeat()
        assert not await redis.exists(
            f"{settings.redis_channel}:presence:process:{second._process}"
        )
        assert await redis.ttl(f"{settings.redis_channel}:presence:process:{first._process}") > 0

        # A process that closes stops counting at once.
        await first.close()
        assert await third.online() == OnlineCounts(users=0, sockets=0)
    finally:
        for presence in (first, second, third):
            await presence.close()
        await redis.aclose()
