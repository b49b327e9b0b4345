"""What recoveries cost the Redis that every process shares (engine 0.3.9's index per room).

Fills a Redis history to RECOVERY_MAX_MESSAGES (10,000 entries of ~200 bytes, each to two
users, ``--own`` of them to the recovering user), then runs ``--loops`` clients that
recover from the oldest position over and over for ``--seconds``, and reports Redis's Lua
time per recovery (``INFO commandstats``), its share of Redis's time, and a bystander's
PING round trip meanwhile. It drives ``RedisHistory`` directly (no web process), so the
figure is Redis's side alone.

    build/lib-venv/bin/python benchmarks/redis_recovery_cost.py --redis redis://127.0.0.1:6379/9

The database it is given is emptied first. Before 0.3.9, with 8 loops and 10 own entries:
34 ms of Lua per recovery, Redis saturated at 30 recoveries a second; with 0.3.9, 0.13 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import redis.asyncio as aioredis
from transom_socketio.realtime.positions import PositionCodec
from transom_socketio.realtime.redis_history import RedisHistory

HISTORY = 10_000
MINE = ["user:me", "everyone"]


class NoSockets:
    """Stands for the Socket.IO server: this benchmark delivers to no socket."""

    async def emit(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    async def close_transports(self) -> None:
        return None


async def lua_microseconds(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(stats[name]["usec"] for name in ("cmdstat_evalsha", "cmdstat_eval") if name in stats)


async def main(url: str, own: int, loops: int, seconds: float) -> None:
    redis = aioredis.Redis.from_url(url)
    await redis.flushdb()
    codec = PositionCodec("benchmark-" + "k" * 40)
    histories = [
        RedisHistory(NoSockets(), url, "bench", 600, HISTORY, codec)  # type: ignore[arg-type]
        for _ in range(loops)
    ]
    for history in histories:
        await history.start()
    start = await histories[0].head()
    every = HISTORY // own
    for n in range(HISTORY):
        mine = n % every == 0
        rooms = ["user:me", "user:x"] if mine else [f"user:o{n % 500}", f"user:p{n % 300}"]
        await histories[0].emit("tick", ({"n": n, "text": "x" * 200},), rooms)
    await asyncio.sleep(1)  # every reader has delivered the history
    recoveries = 0
    stop = time.monotonic() + seconds

    async def recover(history: RedisHistory) -> None:
        nonlocal recoveries
        while time.monotonic() < stop:
            replay = await history.since(start, MINE)
            while await replay.chunk():
                pass
            recoveries += 1

    pings: list[float] = []

    async def bystander() -> None:
        other = aioredis.Redis.from_url(url)
        while time.monotonic() < stop:
            sent = time.perf_counter()
            await other.ping()
            pings.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.05)
        await other.aclose()

    before = await lua_microseconds(redis)
    await asyncio.gather(bystander(), *(recover(history) for history in histories))
    lua = (await lua_microseconds(redis) - before) / 1e6
    pings.sort()
    print(
        f"{loops} loops, {own} own entries of {HISTORY}, {seconds:.0f} s: {recoveries} recoveries, "
        f"{lua * 1000 / max(recoveries, 1):.2f} ms of Lua each, Lua {lua / seconds:.0%} of Redis; "
        f"bystander's PING median {statistics.median(pings):.1f} ms, "
        f"p99 {pings[max(0, int(len(pings) * 0.99) - 1)]:.1f} ms"
    )
    for history in histories:
        await history.close()
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--own", type=int, default=10, help="entries to the recovering user")
    parser.add_argument("--loops", type=int, default=8, help="clients recovering at once")
    parser.add_argument("--seconds", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.redis, arguments.own, arguments.loops, arguments.seconds))
