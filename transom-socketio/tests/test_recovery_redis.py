"""Recovery with REDIS_URL: the history is a Redis stream (realtime/redis_history.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from bson import ObjectId
from conftest import REDIS_URL

# Every test of test_recovery.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_recovery import *  # noqa: F403
from test_recovery import away, recovering

from transom_socketio.realtime.rooms import EVERYONE, user_room

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


@pytest.mark.gen_test(timeout=120)
async def test_a_recovery_reads_only_the_entries_of_its_rooms_however_busy_the_history(
    app, api, base_url, registry, clients
):
    """A replay's cost to the shared Redis: it reads the entries addressed to its socket's
    rooms, not every entry after its position. It read them all (twice, to count and to
    send), 30-60 ms of Redis's time per recovery over a full history, which a few
    accounts recovering in a loop from several processes turned into a Redis busy for
    everyone (the scale-out review of engine 0.3.8)."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    others = [str(ObjectId()) for _ in range(50)]
    await away(app, client)
    position = client.position
    for n in range(1000):
        if n % 200 == 0:
            await msg.emitToUsers(client.user.id, "tick", {"n": n})
        await msg.emitToUsers(others[n % 50], "tick", {"private": n})
    await msg.emitToEveryone("tick", {"n": "everyone"})
    history = app.settings["services"].socket_server.history
    rooms = (user_room(client.user.id), EVERYONE)
    replay = await history.since(position, rooms)
    assert (replay.complete, replay.count, replay.looked) == (True, 6, 6)
    entries = await replay.chunk()
    assert [entry.args[0]["n"] for entry in entries] == [0, 200, 400, 600, 800, "everyone"]
    assert await replay.chunk() == []
    assert replay.looked == 12  # counted, then read: nothing of the 1,000 others'
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": True, "count": 6}
    await client.wait_until(lambda: len(client.payloads()) == 6)
    assert [p["n"] for p in client.payloads()] == [0, 200, 400, 600, 800, "everyone"]


@pytest.mark.gen_test(timeout=60)
async def test_entries_appended_by_a_release_without_room_indexes_make_recovery_incomplete(
    app, api, base_url, registry, settings, clients
):
    """A rolling upgrade from engine 0.3.8: its processes append entries that no room
    index holds. A replay over one of them would miss it and say it is complete; it is
    incomplete instead, and recoveries from positions after the next entry of this
    release are complete again."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    await msg.emitToUsers(client.user.id, "tick", {"n": 0})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    await away(app, client)
    stream = f"{settings.redis_channel}:history"
    room = user_room(client.user.id)
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        newest = (await redis.xrevrange(stream, count=1))[0][0]
        entry = {"event": "tick", "args": [{"n": 1}], "rooms": [room]}
        await redis.xadd(stream, {"p": newest, "r": room, "m": json.dumps(entry)})
    finally:
        await redis.aclose()
    await msg.emitToUsers(client.user.id, "tick", {"n": 2})
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    await msg.emitToUsers(client.user.id, "tick", {"n": 3})  # live: a position past them
    await client.wait_until(lambda: len(client.payloads()) == 2)
    await away(app, client)
    await msg.emitToUsers(client.user.id, "tick", {"n": 4})
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 3)
    assert client.recoveries()[2] == {"complete": True, "count": 1}
    await client.wait_until(lambda: len(client.payloads()) == 3)
    assert [p["n"] for p in client.payloads()] == [0, 3, 4]
