"""Recovery with REDIS_URL: the history is a Redis stream (realtime/redis_history.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from typing import Any

import pytest
import redis.asyncio as aioredis
from bson import ObjectId
from conftest import ON_REDIS
from test_outage_redis import Served

# Every test of test_recovery.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_recovery import *  # noqa: F403
from test_recovery import away, recovering

from transom_socketio import app as application
from transom_socketio.realtime.positions import PositionCodec
from transom_socketio.realtime.redis_history import INDEXED_ROOMS_AT_MOST, RedisHistory
from transom_socketio.realtime.rooms import EVERYONE, user_room
from transom_socketio.testing.clients import Api, RecoveringClient, Sockets

pytestmark = ON_REDIS


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


@pytest.mark.gen_test(timeout=60)
async def test_an_emit_to_many_users_is_recovered_by_them_and_only_them(
    app, api, base_url, registry, clients
):
    """An emit to more rooms than INDEXED_ROOMS_AT_MOST goes to the wide index (one set
    of its rooms, not one index entry per room): its users recover it, others do not."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    bystander = await recovering(clients, api, base_url)
    many = [str(ObjectId()) for _ in range(INDEXED_ROOMS_AT_MOST + 50)]
    await away(app, client)
    await away(app, bystander)
    await msg.emitToUsers([*many, client.user.id], "tick", {"n": "to many"})
    await msg.emitToUsers(client.user.id, "tick", {"n": "to one"})
    await msg.emitToUsers(many[:2], "tick", {"n": "to others"})
    client.may_connect.set()
    bystander.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    await bystander.wait_until(lambda: len(bystander.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": True, "count": 2}
    assert bystander.recoveries()[1] == {"complete": True, "count": 0}
    await client.wait_until(lambda: len(client.payloads()) == 2)
    assert [p["n"] for p in client.payloads()] == ["to many", "to one"]


def pause_reader(
    history: RedisHistory, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the process's stream reader at its next read until the first event is set;
    the second is set once it waits there (the read under way still completes)."""
    release, waiting = asyncio.Event(), asyncio.Event()
    xread = history._reading.xread

    async def paused(*args: Any, **kwargs: Any) -> Any:
        waiting.set()
        await release.wait()
        return await xread(*args, **kwargs)

    monkeypatch.setattr(history._reading, "xread", paused)
    return release, waiting


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_emits_is_kept_for_recovery_every_one(
    app, api, base_url, registry, clients
):
    """Found by a review: redis-py's pool failed the 101st concurrent call at once
    (MaxConnectionsError), so of 150 emits made together 50 were not kept: delivered to
    this process's sockets only, without position, and never to a socket elsewhere (a
    worker's emits reached no one), while Redis was healthy."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    await away(app, client)
    await asyncio.gather(*(msg.emitToUsers(client.user.id, "tick", {"n": n}) for n in range(150)))
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": True, "count": 150}
    await client.wait_until(lambda: len(client.payloads()) == 150)
    assert sorted(p["n"] for p in client.payloads()) == list(range(150))


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_max_messages": 10}])
async def test_a_reader_that_lost_entries_resumes_at_the_newest_once(
    app, api, base_url, registry, settings, clients, monkeypatch, caplog
):
    """Found by a review: a reader that fell behind found entries trimmed, closed its
    sockets, then walked the older entries the stream still held, found the next ones
    trimmed too, and closed every socket again at almost every batch. It resumes at the
    stream's newest entry instead: its sockets are closed once, and told (incomplete)."""
    msg = registry["transomMsgClient"]
    history = app.settings["services"].socket_server.history
    client = await recovering(clients, api, base_url)
    release, _waiting = pause_reader(history, monkeypatch)
    # The XREAD under way returns this one; the reader's next waits for the release.
    await msg.emitToUsers(client.user.id, "tick", {"n": "read"})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    for n in range(30):  # the stream keeps the last 10
        await msg.emitToUsers(client.user.id, "tick", {"n": n})
    delivered: list[str] = []
    deliver = history._deliver

    async def counted(entry: Any) -> None:
        delivered.append(entry.id)
        await deliver(entry)

    monkeypatch.setattr(history, "_deliver", counted)
    caplog.set_level(logging.ERROR, "transom_socketio.realtime.redis_history")
    release.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        newest = (await redis.xrevrange(f"{settings.redis_channel}:history", count=1))[0][0]
    finally:
        await redis.aclose()
    assert history._delivered_through == newest
    assert delivered == []  # the 10 older entries it still held were not walked
    assert len([r for r in caplog.records if "were gone" in r.getMessage()]) == 1
    await msg.emitToUsers(client.user.id, "tick", {"n": "after"})
    await client.wait_until(lambda: client.payloads()[-1] == {"n": "after"})
    assert client.connects == 2


@pytest.mark.gen_test(timeout=60)
async def test_a_socket_back_on_a_process_whose_reader_lags_gets_nothing_twice(
    app, api, settings, http_client, clients, monkeypatch
):
    """Found by a review: a client up to date on one process came back on another whose
    reader of the stream was behind its position; after READER_WAIT_SECONDS its recovery
    said incomplete (right), and then the reader, catching up, delivered it again every
    message it had had (1,731 in the review), as new ones."""
    behind = app.settings["services"].socket_server.history
    ahead = Served(settings)  # the process the client was on, reading the stream live
    await application.start(ahead.app)
    release, waiting = pause_reader(behind, monkeypatch)
    msg = ahead.app.settings["registry"]["transomMsgClient"]
    try:
        await msg.emitToEveryone("tick", {"n": "sync"})  # ends the XREAD under way
        await asyncio.wait_for(waiting.wait(), 10)
        api_ahead = Api(http_client, ahead.url)
        on_ahead = await recovering(clients, api_ahead, ahead.url)
        for n in range(5):
            await msg.emitToUsers(on_ahead.user.id, "tick", {"n": n})
        await on_ahead.wait_until(lambda: len(on_ahead.payloads()) == 5)
        await on_ahead.close()
        back = RecoveringClient(api, on_ahead.user, api.base_url)
        clients.append(back)
        back.position = on_ahead.position
        await back.connect()
        await back.wait_until(lambda: len(back.recoveries()) == 1)
        assert back.recoveries() == [{"complete": False, "count": 0}]
        release.set()  # the reader catches up: the 5 it had must not come again
        await msg.emitToUsers(on_ahead.user.id, "tick", {"n": "new"})
        await back.wait_until(lambda: bool(back.payloads()))
        await asyncio.sleep(0.5)
        assert back.payloads() == [{"n": "new"}]
    finally:
        release.set()
        await ahead.stop()


@pytest.mark.gen_test(timeout=60)
async def test_after_a_loss_marked_in_a_stream_redis_lost_recoveries_are_complete_again(
    app, api, base_url, registry, settings, clients, monkeypatch
):
    """Redis lost the stream (a restart without persistence) and an emit failed meanwhile:
    the loss marker is then the stream's first entry. Recoveries across it are
    incomplete; from positions after it, complete again (the marker records where the
    indexed entries begin, as a first append does)."""
    msg = registry["transomMsgClient"]
    history = app.settings["services"].socket_server.history
    client = await recovering(clients, api, base_url)
    await away(app, client)
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        stream = f"{settings.redis_channel}:history"
        await redis.delete(stream, f"{stream}:indexed-after")
    finally:
        await redis.aclose()
    append = history._append

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise aioredis.ConnectionError("refused")

    monkeypatch.setattr(history, "_append", refused)
    await msg.emitToUsers(client.user.id, "tick", {"n": "lost"})
    monkeypatch.setattr(history, "_append", append)
    await asyncio.wait_for(history._marking, 10)
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    await away(app, client)
    # What a client does after complete: false: reload, then go on from a fresh position.
    token = await api.request("POST", "/api/v1/user/sockettoken", token=client.user.token)
    client.position = token.body["position"]
    await msg.emitToUsers(client.user.id, "tick", {"n": "kept"})
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 3)
    assert client.recoveries()[2] == {"complete": True, "count": 1}
    await client.wait_until(lambda: client.payloads()[-1:] == [{"n": "kept"}])


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_max_messages": 10}])
async def test_the_indexes_go_with_the_entries_the_stream_no_longer_holds(
    api, registry, settings, sockets: Sockets
):
    """Redis holds no more index than the stream's window needs: an index whose room's
    entries the stream has trimmed is deleted by a later append, however long the
    retention. (Each index expired a minute after the retention: a deployment that sent
    one message to each of many users kept an index per user for that long.)"""
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    tab = await sockets.connect(await api.socket_token(user), events=("tick",))
    for _ in range(30):
        await msg.emitToUsers(str(ObjectId()), "tick", {"n": "once"})
        await asyncio.sleep(0.002)  # not in the millisecond of the next (see _APPEND)
    redis = aioredis.Redis.from_url(settings.redis_url)
    pattern = f"{settings.redis_channel}:history:sent-to:*"
    try:
        assert len([key async for key in redis.scan_iter(match=pattern)]) == 10
        for n in range(10):
            await msg.emitToUsers(user.id, "tick", {"n": n})
            await asyncio.sleep(0.002)
        await tab.wait_for("tick", 10)
        assert len([key async for key in redis.scan_iter(match=pattern)]) == 1
        assert await redis.zcard(f"{settings.redis_channel}:history:indexes") == 1
    finally:
        await redis.aclose()


class NoSockets:
    """Stands for the Socket.IO server of a history that delivers to no socket."""

    async def emit(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@pytest.mark.gen_test(timeout=30)
async def test_a_redis_that_may_evict_keys_is_named_at_start(tmp_path, caplog):
    """Evicting an index (or an edit) while the stream keeps its entries would make a
    recovery miss them and still say complete: the history says so at start-up."""
    socket_path = tmp_path / "redis.sock"
    server = await asyncio.create_subprocess_exec(
        *(shutil.which("redis-server") or "redis-server", "--port", "0", "--save", ""),
        *("--unixsocket", str(socket_path), "--maxmemory-policy", "allkeys-lru"),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if socket_path.exists():
                break
            await asyncio.sleep(0.05)
        history = RedisHistory(
            NoSockets(),  # type: ignore[arg-type]
            f"unix://{socket_path}",
            "evicting",
            600,
            100,
            PositionCodec("k" * 43),
        )
        with caplog.at_level(logging.WARNING):
            await history.start()
            await history.close()
        assert "Redis may evict keys (maxmemory-policy allkeys-lru)" in caplog.text
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
