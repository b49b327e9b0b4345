"""Who is in a presence channel with REDIS_URL (realtime/redis_channel_presence.py): the
processes are simulated on the store (several ``RedisChannelPresence`` on one Redis
channel, each with its own process id)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL

# Every test of test_channel_presence.py, again on Redis (collected here under this
# module's ``presence`` fixture), and the tests that only make sense with Redis.
from test_channel_presence import *  # noqa: F403
from test_channel_presence import ADA, BOB, CYD, ODD_CHANNELS, counts, is_gone

from transom_socketio.realtime.redis_channel_presence import (
    FORGET_BATCH,
    LEAVING_MARK_SECONDS,
    QUIET_SECONDS,
    RedisChannelPresence,
    channel_hash,
)
from transom_socketio.realtime.redis_presence import FORGOTTEN_AFTER_HEARTBEATS

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 0.5

Processes = Callable[..., RedisChannelPresence]


@pytest.fixture
def redis_channel() -> str:
    """A channel (key prefix) of this test's own."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def processes(io_loop: Any, redis_channel: str) -> Iterator[Processes]:
    """A new process of this test's deployment at each call; all closed at the end, and
    what they leave (leaving marks) deleted."""
    made: list[RedisChannelPresence] = []

    def process(heartbeat_seconds: int = HEARTBEAT_SECONDS) -> RedisChannelPresence:
        store = RedisChannelPresence(REDIS_URL, redis_channel, heartbeat_seconds, GRACE_SECONDS)
        made.append(store)
        return store

    yield process

    async def tear_down() -> None:
        for store in made:
            await store.close()
        async with _redis() as redis:
            async for key in redis.scan_iter(match=f"{redis_channel}:*"):
                await redis.delete(key)

    io_loop.run_sync(tear_down)


@pytest.fixture
def presence(processes: Processes) -> RedisChannelPresence:
    return processes()


def _redis() -> aioredis.Redis:
    return aioredis.Redis.from_url(REDIS_URL)


async def _keys(redis_channel: str) -> list[bytes]:
    async with _redis() as redis:
        return [key async for key in redis.scan_iter(match=f"{redis_channel}:*")]


async def _eventually(check: Callable[[], Any], seconds: float) -> float:
    """Wait until ``await check()`` is true; the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


@pytest.mark.gen_test(timeout=30)
async def test_a_user_on_two_processes_counts_once(processes: Processes):
    first, second = processes(), processes()
    assert counts(await first.subscribed("room", ADA)) == (1, True)
    assert counts(await second.subscribed("room", ADA)) == (2, False)
    assert counts(await second.subscribed("room", ADA)) == (3, False)
    assert counts(await first.unsubscribed("room", ADA, "m1")) == (2, False)
    assert await first.unsubscribed("room", ADA, "m1") is None  # first holds none now
    assert counts(await second.unsubscribed("room", ADA, "m2")) == (1, False)
    assert counts(await second.unsubscribed("room", ADA, "m3")) == (0, True)
    assert is_gone(await first.gone("room", ADA, "m3")) is True  # any process may end the grace


@pytest.mark.gen_test(timeout=30)
async def test_leaving_one_process_and_coming_back_on_another_is_not_news(
    processes: Processes,
):
    first, second = processes(), processes()
    await first.subscribed("room", ADA)
    assert counts(await first.unsubscribed("room", ADA, "m1")) == (0, True)
    assert counts(await second.subscribed("room", ADA)) == (1, False)
    assert is_gone(await first.gone("room", ADA, "m1")) is False
    assert await first.members("room", 10) == [ADA]

    # Leaving the second too: its grace decides, whichever process ends it.
    assert counts(await second.unsubscribed("room", ADA, "m2")) == (0, True)
    assert is_gone(await first.gone("room", ADA, "m1")) is False
    assert is_gone(await first.gone("room", ADA, "m2")) is True


@pytest.mark.gen_test(timeout=30)
async def test_a_channel_goes_quiet_once_for_all_processes_and_its_mark_goes_with_it(
    processes: Processes, redis_channel: str
):
    first, second = processes(), processes()
    users = [f"{number:024x}" for number in range(6)]
    # Six users on two processes at once, limit 4: exactly one change switches it off.
    changes = await asyncio.gather(
        *(
            (first if number % 2 else second).subscribed("room", user, 4)
            for number, user in enumerate(users)
        )
    )
    assert sum(change.join_leave.switched for change in changes) == 1
    assert await first.join_leave("room") == await second.join_leave("room") == (6, False, False)
    quiet_key = f"{redis_channel}:channel-presence:channel:{channel_hash('room')}:quiet"
    async with _redis() as redis:
        assert 0 < await redis.ttl(quiet_key) <= QUIET_SECONDS

    # Down to 3 (resume_at(4)) on either process: one switch back on.
    mode = []
    for number, user in enumerate(users[:3]):
        store = first if number % 2 else second
        mode.append((await store.unsubscribed("room", user, "m", 4)).join_leave)
    assert mode == [(5, False, False), (4, False, False), (3, True, True)]
    for number, user in enumerate(users[3:]):
        await (second if number % 2 else first).unsubscribed("room", user, "m", 4)
    async with _redis() as redis:
        assert not await redis.exists(quiet_key)


@pytest.mark.gen_test(timeout=30)
async def test_members_across_processes(processes: Processes):
    first, second, reader = processes(), processes(), processes()
    await first.subscribed("room", ADA)
    await second.subscribed("room", ADA)
    await second.subscribed("room", BOB)
    await first.subscribed("room", CYD)
    await first.subscribed("hall", CYD)
    # A process with no socket (no heartbeat of its own) reads them all the same.
    for store in (first, second, reader):
        assert sorted(await store.members("room", 10)) == [ADA, BOB, CYD]
        assert await store.members("hall", 10) == [CYD]
        listed = await store.members("room", 2)
        assert len(set(listed)) == 2 and set(listed) <= {ADA, BOB, CYD}
    await first.unsubscribed("room", ADA, "m")  # still on the second
    await first.unsubscribed("room", CYD, "m")  # in the grace: listed until gone
    assert sorted(await reader.members("room", 10)) == [ADA, BOB, CYD]
    assert is_gone(await second.gone("room", CYD, "m")) is True
    assert sorted(await reader.members("room", 10)) == [ADA, BOB]


@pytest.mark.gen_test(timeout=60)
async def test_a_process_that_stops_heartbeating_stops_counting_after_three_heartbeats(
    processes: Processes, redis_channel: str
):
    silent, live = processes(heartbeat_seconds=1), processes(heartbeat_seconds=1)
    await silent.subscribed("room", ADA)
    await live.subscribed("room", BOB)
    assert sorted(await live.members("room", 10)) == [ADA, BOB]

    # The silent process stops beating (as if it hung or crashed; nothing is deleted).
    assert silent._heartbeats is not None
    silent._heartbeats.cancel()
    stopped = time.monotonic()

    async def only_bob() -> bool:
        return await live.members("room", 10) == [BOB]

    await _eventually(only_bob, seconds=8)
    # Not before 3 heartbeats (the last beat was at most 1 s before it stopped), and
    # the live process's own beats kept Bob counted meanwhile.
    assert time.monotonic() - stopped > 2
    # Ada's socket there is not believed any more: her first one elsewhere is news.
    assert counts(await live.subscribed("room", ADA)) == (1, True)
    assert counts(await live.unsubscribed("room", ADA, "m")) == (0, True)
    assert is_gone(await live.gone("room", ADA, "m")) is True

    # Once forgotten, the next heartbeat of another process deletes what it kept.
    async with _redis() as redis:
        processes_key = f"{redis_channel}:channel-presence:processes"
        now = int((await redis.time())[0])
        await redis.zadd(processes_key, {silent._process: now - FORGOTTEN_AFTER_HEARTBEATS - 1})
        await live._heartbeat()
        assert await redis.zscore(processes_key, silent._process) is None
        assert await redis.ttl(f"{redis_channel}:channel-presence:process:{live._process}") > 0
        users = f"{redis_channel}:channel-presence:channel:{channel_hash('room')}:users"
        assert await redis.smembers(users) == {BOB.encode()}
    keys = await _keys(redis_channel)
    assert not [key for key in keys if silent._process.encode() in key]
    room = channel_hash("room").encode()
    assert not [key for key in keys if room in key and key.endswith(ADA.encode())]
    assert await live.members("room", 10) == [BOB]


@pytest.mark.gen_test(timeout=30)
async def test_entries_of_a_process_no_longer_heartbeating_are_dropped_when_read(
    processes: Processes, redis_channel: str
):
    # A deployment that vanished (its process hashes expired, nobody forgot it): what
    # it left in a channel goes when the channel is next read or changed.
    gone, reader = processes(), processes()
    await gone.subscribed("room", ADA)
    await gone.subscribed("room", BOB)
    async with _redis() as redis:
        await redis.zrem(f"{redis_channel}:channel-presence:processes", gone._process)
        await redis.delete(f"{redis_channel}:channel-presence:process:{gone._process}")
    assert await reader.members("room", 10) == []
    assert counts(await reader.subscribed("room", BOB)) == (1, True)
    assert counts(await reader.unsubscribed("room", BOB, "m")) == (0, True)
    assert is_gone(await reader.gone("room", BOB, "m")) is True
    assert await _keys(redis_channel) == [f"{redis_channel}:channel-presence:processes".encode()]


@pytest.mark.gen_test(timeout=30)
async def test_a_process_that_closes_stops_counting_at_once_and_leaves_nothing(
    processes: Processes, redis_channel: str
):
    closing, live = processes(), processes()
    for channel in ("room", "hall"):
        await closing.subscribed(channel, ADA)
        await closing.subscribed(channel, BOB)
    await live.subscribed("room", BOB)
    await closing.close()
    assert await live.members("room", 10) == [BOB]
    assert await live.members("hall", 10) == []
    assert counts(await live.subscribed("hall", ADA)) == (1, True)
    assert not [key for key in await _keys(redis_channel) if closing._process.encode() in key]
    assert await closing.subscribed("room", ADA) is None  # closed: counts nothing


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_subscriptions_on_two_processes_make_exactly_one_join_and_leave(
    processes: Processes,
):
    first, second = processes(), processes()
    joins = await asyncio.gather(
        *(store.subscribed("room", ADA) for _ in range(20) for store in (first, second))
    )
    assert [counted.news for counted in joins if counted].count(True) == 1
    assert sorted(counted.sockets for counted in joins if counted) == list(range(1, 41))

    marks = [f"m{n}" for n in range(40)]
    leaves = await asyncio.gather(
        *((first, second)[n % 2].unsubscribed("room", ADA, mark) for n, mark in enumerate(marks))
    )
    assert [counted.news for counted in leaves if counted].count(True) == 1
    assert sorted(counted.sockets for counted in leaves if counted) == list(range(40))
    assert await first.members("room", 10) == [ADA]  # in the grace of the last one
    (last,) = [mark for mark, counted in zip(marks, leaves, strict=True) if counted.news]
    assert is_gone(await second.gone("room", ADA, last)) is True
    assert await first.members("room", 10) == []


@pytest.mark.gen_test(timeout=30)
async def test_channel_names_never_reach_a_key(processes: Processes, redis_channel: str):
    first, second = processes(), processes()
    for channel in ODD_CHANNELS:
        await first.subscribed(channel, ADA)
        await second.subscribed(channel, BOB)
        await second.unsubscribed(channel, BOB, "m")  # a leaving mark too
    keys = await _keys(redis_channel)
    prefix = f"{redis_channel}:channel-presence:".encode()
    assert keys and all(key.startswith(prefix) for key in keys)
    for channel in ODD_CHANNELS:
        assert any(channel_hash(channel).encode() in key for key in keys)
        leavers = f"{redis_channel}:channel-presence:channel:{channel_hash(channel)}:leavers"
        assert leavers.encode() in keys, channel  # Bob, in his grace
        if channel:
            # Neither the name nor a part of it that could pass for a key segment.
            name = channel.encode("utf-8")
            assert not [key for key in keys if name in key[len(prefix) :]], channel
    for key in keys:
        assert key[len(prefix) :].isascii()
        # (Not b"caf" alone: a process's random hex id holds it about one run in 140.)
        assert b"room" not in key and "caf\u00e9".encode() not in key and b"*" not in key
    # A name that is not valid UTF-8 on its own (a lone surrogate) is a channel too.
    assert counts(await first.subscribed("\ud800", ADA)) == (1, True)


@pytest.mark.gen_test(timeout=30)
async def test_a_channel_nobody_is_in_leaves_only_its_expiring_marks(
    processes: Processes, redis_channel: str
):
    first, second = processes(), processes()
    await first.subscribed("room", ADA)
    await second.subscribed("room", BOB)
    await second.subscribed("room", BOB)
    room = channel_hash("room")
    assert counts(await first.unsubscribed("room", ADA, "m1")) == (0, True)
    await second.unsubscribed("room", BOB, "m2")
    await second.unsubscribed("room", BOB, "m3")

    prefix = f"{redis_channel}:channel-presence"
    marks = {f"{prefix}:channel:{room}:leaving:{user}".encode() for user in (ADA, BOB)}
    leavers = f"{prefix}:channel:{room}:leavers".encode()
    assert set(await _keys(redis_channel)) == {*marks, leavers, f"{prefix}:processes".encode()}
    async with _redis() as redis:
        for key in (*marks, leavers):
            assert 0 < await redis.pttl(key) <= 1000 * (GRACE_SECONDS + LEAVING_MARK_SECONDS)
    assert is_gone(await first.gone("room", ADA, "m1")) is True
    assert is_gone(await first.gone("room", BOB, "m3")) is True
    assert await _keys(redis_channel) == [f"{prefix}:processes".encode()]


@pytest.mark.gen_test(timeout=30)
async def test_members_skips_what_only_stale_processes_hold(
    processes: Processes, redis_channel: str
):
    stale, live = processes(), processes()
    await stale.subscribed("room", ADA)
    await stale.subscribed("room", BOB)
    await live.subscribed("room", CYD)
    async with _redis() as redis:
        now = int((await redis.time())[0])
        processes_key = f"{redis_channel}:channel-presence:processes"
        await redis.zadd(processes_key, {stale._process: now - 3 * HEARTBEAT_SECONDS - 1})
    assert await live.members("room", 10) == [CYD]
    assert await live.members("room", 1) == [CYD]  # the stale ones do not use the limit
    # A process always believes its own counts (it is running), even with a late beat.
    assert sorted(await stale.members("room", 10)) == [ADA, BOB, CYD]
    assert counts(await stale.subscribed("hall", ADA)) == (1, True)
    assert counts(await stale.unsubscribed("room", ADA, "m")) == (0, True)
    assert is_gone(await stale.gone("room", ADA, "m")) is True  # (listed until then)
    # The heartbeat resumes: its sockets count again.
    await stale._heartbeat()
    assert sorted(await live.members("room", 10)) == [BOB, CYD]


@pytest.mark.gen_test(timeout=30)
async def test_without_redis_nothing_is_news_and_members_raises():
    store = RedisChannelPresence("redis://127.0.0.1:1/0", "test-none", 1, 0.1)
    try:
        assert await store.subscribed("room", ADA) is None
        assert await store.unsubscribed("room", ADA, "m") is None
        assert is_gone(await store.gone("room", ADA, "m")) is False
        with pytest.raises(aioredis.RedisError):
            await store.members("room", 10)
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_large_process_is_forgotten_and_closed_in_batches(
    processes: Processes, redis_channel: str
):
    entries = 2 * FORGET_BATCH + 500
    silent, closing, live = processes(), processes(), processes()
    for store in (silent, closing):
        for start in range(0, entries, 250):
            await asyncio.gather(
                *(store.subscribed(f"room-{n}", ADA) for n in range(start, start + 250))
            )
    prefix = f"{redis_channel}:channel-presence"
    async with _redis() as redis:
        assert await redis.hlen(f"{prefix}:process:{silent._process}") == entries
        now = int((await redis.time())[0])
        forgotten = now - FORGOTTEN_AFTER_HEARTBEATS * HEARTBEAT_SECONDS - 1
        await redis.zadd(f"{prefix}:processes", {silent._process: forgotten})
        # One heartbeat deletes a batch; the process stays known until the last one.
        await live._heartbeat()
        left = await redis.hlen(f"{prefix}:process:{silent._process}")
        assert 0 < left <= entries - FORGET_BATCH
        assert await redis.zscore(f"{prefix}:processes", silent._process) is not None
        for _ in range(2):
            await live._heartbeat()
        assert await redis.zscore(f"{prefix}:processes", silent._process) is None

    await closing.close()
    assert await _keys(redis_channel) == [f"{prefix}:processes".encode()]


# Members in their leave grace (issue 23) across processes ---------------------------


def _leavers_key(redis_channel: str, channel: str) -> str:
    return f"{redis_channel}:channel-presence:channel:{channel_hash(channel)}:leavers"


@pytest.mark.gen_test(timeout=30)
async def test_a_user_in_the_grace_on_one_process_is_listed_by_every_process_once(
    processes: Processes, redis_channel: str
):
    first, second, reader = processes(), processes(), processes()
    await first.subscribed("room", ADA)
    await second.subscribed("room", BOB)
    assert counts(await first.unsubscribed("room", ADA, "m1")) == (0, True)
    for store in (first, second, reader):
        assert sorted(await store.members("room", 10)) == [ADA, BOB]
    async with _redis() as redis:
        assert await redis.zscore(_leavers_key(redis_channel, "room"), ADA) is not None

    # Back on another process within the grace: no join, listed once, no leave.
    assert counts(await second.subscribed("room", ADA)) == (1, False)
    for store in (first, second, reader):
        assert sorted(await store.members("room", 10)) == [ADA, BOB]
    assert is_gone(await first.gone("room", ADA, "m1")) is False
    assert sorted(await reader.members("room", 10)) == [ADA, BOB]

    # Leaving that one too: listed until its grace ends, on whichever process.
    assert counts(await second.unsubscribed("room", ADA, "m2")) == (0, True)
    assert sorted(await reader.members("room", 10)) == [ADA, BOB]
    assert is_gone(await first.gone("room", ADA, "m2")) is True
    assert await reader.members("room", 10) == [BOB]
    async with _redis() as redis:
        assert not await redis.exists(_leavers_key(redis_channel, "room"))


@pytest.mark.gen_test(timeout=30)
async def test_a_user_whose_mark_expired_is_not_listed_and_their_entry_goes(
    processes: Processes, redis_channel: str
):
    # The process that ran Ada's grace stopped: no ``gone``, and her mark expired.
    first, reader = processes(), processes()
    await first.subscribed("room", ADA)
    await first.subscribed("room", BOB)
    await first.unsubscribed("room", ADA, "m1")
    await first.unsubscribed("room", BOB, "m2")
    leavers = _leavers_key(redis_channel, "room")
    async with _redis() as redis:
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        await redis.zadd(leavers, {ADA: now_ms - 1})
        prefix = f"{redis_channel}:channel-presence:channel:{channel_hash('room')}"
        await redis.delete(f"{prefix}:leaving:{ADA}")
        assert await reader.members("room", 10) == [BOB]  # Bob's grace is still on
        assert await redis.zscore(leavers, ADA) is None  # dropped as it was read
        assert await redis.zscore(leavers, BOB) is not None
        await redis.zadd(leavers, {BOB: now_ms - 1})
        assert await reader.members("room", 10) == []
        assert not await redis.exists(leavers)


@pytest.mark.gen_test(timeout=30)
async def test_the_leavers_set_expires_with_its_latest_mark(
    processes: Processes, redis_channel: str
):
    store = processes()
    for user in (ADA, BOB):
        await store.subscribed("room", user)
        await store.unsubscribed("room", user, "m")
    leavers = _leavers_key(redis_channel, "room")
    lifetime = 1000 * (GRACE_SECONDS + LEAVING_MARK_SECONDS)
    async with _redis() as redis:
        scores = dict(await redis.zrange(leavers, 0, -1, withscores=True))
        assert set(scores) == {ADA.encode(), BOB.encode()}
        mark_ttl = await redis.pttl(
            f"{redis_channel}:channel-presence:channel:{channel_hash('room')}:leaving:{BOB}"
        )
        ttl = await redis.pttl(leavers)
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        assert 0 < ttl <= lifetime
        # At Bob's deadline, the later one, with his mark (PEXPIRETIME needs Redis 7).
        assert abs(max(scores.values()) - now_ms - ttl) < 1000
        assert abs(ttl - mark_ttl) < 1000


@pytest.mark.gen_test(timeout=60)
async def test_users_leaving_and_coming_back_at_once_on_two_processes_are_listed_once(
    processes: Processes,
):
    first, second = processes(), processes()
    users = [f"{number:024x}" for number in range(10)]
    for user in users:
        await first.subscribed("room", user)
        await second.subscribed("room", user)

    async def churn(user: str, round_: int) -> None:
        await first.unsubscribed("room", user, f"{user}-{round_}-a")
        await second.unsubscribed("room", user, f"{user}-{round_}-b")
        await asyncio.gather(first.subscribed("room", user), second.subscribed("room", user))

    reads: list[list[str]] = []

    async def read() -> None:
        for _ in range(20):
            reads.append(await first.members("room", 100))
            await asyncio.sleep(0)

    for round_ in range(5):
        await asyncio.gather(read(), *(churn(user, round_) for user in users))
    for listed in reads:
        assert sorted(listed) == users  # each once, in the grace or not
    assert len(await second.members("room", 3)) == 3


@pytest.mark.gen_test(timeout=30)
async def test_a_user_both_counted_on_a_stale_process_and_in_the_grace_is_listed_once(
    processes: Processes, redis_channel: str
):
    stale, live = processes(), processes()
    await stale.subscribed("room", ADA)
    async with _redis() as redis:
        now = int((await redis.time())[0])
        processes_key = f"{redis_channel}:channel-presence:processes"
        await redis.zadd(processes_key, {stale._process: now - 3 * HEARTBEAT_SECONDS - 1})
    # Ada's socket there is not believed: her last one here going marks her leaving.
    assert counts(await live.subscribed("room", ADA)) == (1, True)
    assert counts(await live.unsubscribed("room", ADA, "m")) == (0, True)
    await stale._heartbeat()  # believed again: a socket, and a mark, at once
    assert await live.members("room", 10) == [ADA]
    assert await live.members("room", 1) == [ADA]
