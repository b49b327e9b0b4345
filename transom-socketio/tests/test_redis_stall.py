"""A stalled Redis (it takes connections and answers nothing) costs a handshake one
timeout, not one per presence call (found by a review of the scale-out: 10.5 s for a
plain handshake, 5 s more per presence channel asked back, past socket.io-client's 20 s).

After a call to Redis fails, the presence stores' calls of the next seconds fail at once
as it did (realtime/redis_fail_fast.py); every caller already handles that failure."""

from __future__ import annotations

import asyncio
import time

import pytest

from transom_socketio.realtime.redis_channel_presence import RedisChannelPresence
from transom_socketio.realtime.redis_presence import RedisPresence

USER = "a" * 24


class StalledRedis:
    """A TCP server that accepts connections, reads what comes and never answers."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        await reader.read()  # until the client gives up

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.held:
            writer.close()
        self.server.close()


async def timed(call) -> tuple[object, float]:
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


@pytest.mark.gen_test(timeout=60)
async def test_after_one_presence_call_times_out_the_next_fail_at_once():
    stalled = StalledRedis()
    presence = RedisPresence(await stalled.start(), "test-stall", heartbeat_seconds=5)
    try:
        first, waited = await timed(presence.sockets_elsewhere(USER))
        assert first is None and waited >= 4  # it waited for its 5 s timeout
        # The handshake's next calls, and the presence API's, fail without waiting.
        counted, at_once = await timed(presence.connected(USER))
        assert counted is None and at_once < 1
        with pytest.raises(Exception, match="Redis failed moments ago"):
            await presence.online()
    finally:
        await presence.close()
        await stalled.stop()


@pytest.mark.gen_test(timeout=60)
async def test_channel_presence_calls_after_a_timeout_fail_at_once():
    stalled = StalledRedis()
    presence = RedisChannelPresence(await stalled.start(), "test-stall", 5, 1.0)
    try:
        first, waited = await timed(presence.subscribed("room:one", USER))
        assert first is None and waited >= 4
        # A handshake asking back three presence channels: no more waits.
        for channel in ("room:two", "room:three", "room:four"):
            counted, at_once = await timed(presence.subscribed(channel, USER))
            assert counted is None and at_once < 1
    finally:
        await presence.close()
        await stalled.stop()
