"""Presence with REDIS_URL: counts shared through Redis (realtime/redis_presence.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import ON_REDIS

# Every test of test_presence.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_presence import *  # noqa: F403

from transom_socketio.testing.clients import Api

pytestmark = ON_REDIS


@pytest.fixture
def test_settings(test_settings: dict[str, Any]) -> dict[str, Any]:
    # The presence event is off by default (PRESENCE_EVENTS): these tests are about it.
    return {**test_settings, "presence_events": True}


@pytest.mark.gen_test(timeout=30)
async def test_a_presence_request_for_a_hundred_users_is_one_redis_round_trip(api: Api, settings):
    # Issue 20: one request for 100 users made 100 sequential Redis calls. Redis's
    # MONITOR lists every command it runs; this test's channel names its keys.
    ada = await api.new_user("ada")
    users = [await api.new_user() for _ in range(3)]
    ids = [user.id for user in users] * 34
    path = "/api/v1/presence?users=" + ",".join(ids[:100])
    assert (await api.request("GET", path, token=ada.token)).status == 200  # loads the script

    watcher = aioredis.Redis.from_url(settings.redis_url)
    sentinel = f"{settings.redis_channel}:sentinel"
    try:
        async with watcher.monitor() as monitor:
            answer = await api.request("GET", path, token=ada.token)
            await watcher.exists(sentinel)  # the end of what this test watches
            commands = []
            while sentinel not in (command := await monitor.next_command())["command"]:
                commands.append(command)
    finally:
        await watcher.aclose()
    assert answer.status == 200
    assert set(answer.body["presence"]) == {user.id for user in users}
    presence_calls = [
        command
        for command in commands
        if command.get("client_type") != "lua"
        and f"{settings.redis_channel}:presence" in command["command"]
    ]
    assert len(presence_calls) == 1, [command["command"][:80] for command in presence_calls]
