"""The message history in one Redis stream, which also carries messages between processes.

``emit`` appends the event to the stream ``<REDIS_CHANNEL>:history`` (one Lua
script: XADD, then trim by count and by age, so the stream never outgrows
RECOVERY_MAX_MESSAGES or RECOVERY_RETENTION_SECONDS). Every web process reads the
stream with a blocking XREAD and delivers each entry to its own sockets, the
entry's id as its position. So positions are ordered the same way everywhere, and
a socket recovers the same messages on whichever process it reconnects to.

A process cut off from Redis resumes reading after the last entry it delivered, so
messages emitted by other processes meanwhile still arrive (late, in order) as
long as they are in the stream. While Redis refuses the append, ``emit`` delivers
through python-socketio's own path instead: this process's sockets still get the
message, without a position (it cannot be recovered).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
import socketio

from .. import jsonutil
from .history import INCOMPLETE, Entry, Replay
from .rooms import NAMESPACE

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
EMPTY = "0-0"  # the position before the first entry of a stream
READ_BATCH = 512
REPLAY_BATCH = 1000
BLOCK_MS = 10_000
READER_WAIT_SECONDS = 5.0

FIRST = "new"  # the previous id of a stream's first entry

# KEYS: the stream. ARGV: the entry, its rooms, the most entries kept, the retention in ms.
# Each entry names the one before it ('p'), so a reader or a replay can tell when entries
# were trimmed (or lost) before it read them. The newest entry is never trimmed: the
# cutoff is older than it.
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = 'new'
if #last > 0 then previous = last[1][1] end
local id = redis.call(
  'XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'p', previous, 'r', ARGV[2], 'm', ARGV[1])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
if oldest > 0 then redis.call('XTRIM', KEYS[1], 'MINID', oldest) end
return id
"""


def stream_id(position: object) -> tuple[int, int] | None:
    """A stream id as a comparable pair, or None for anything else."""
    match = _STREAM_ID.fullmatch(position) if isinstance(position, str) else None
    if match is None:
        return None
    pair = (int(match[1]), int(match[2]))
    if max(pair) >= 2**64 or position != f"{pair[0]}-{pair[1]}":
        return None  # out of range, or not written the way Redis writes ids
    return pair


class RedisHistory:
    """The history and transport of the message client's emits, for every process."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        redis_url: str,
        channel: str,
        retention_seconds: int,
        max_messages: int,
    ) -> None:
        self._sio = sio
        self._stream = f"{channel}:history"
        self._redis = aioredis.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=5
        )
        self._append = self._redis.register_script(_APPEND)
        self._limits = (max_messages, retention_seconds * 1000)
        # A connection of its own for the reader: XREAD blocks it for up to BLOCK_MS.
        self._reading = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=BLOCK_MS / 1000 + 5,
        )
        self._reader: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._closing = False
        # The newest entry this process's reader has handed to delivery: entries up to it
        # were delivered (or not) to each socket by the rooms it was in then; later ones
        # will reach a socket held for recovery, or, once released, the socket itself.
        self._delivered_through: str | None = None

    async def start(self) -> None:
        """Start delivering the stream's new entries to this process's sockets."""
        if self._reader is not None:
            return
        async with self._starting:
            if self._reader is None:
                try:
                    after: str | None = await self._newest()
                except aioredis.RedisError as error:
                    log.warning("message history: Redis failed (%s)", type(error).__name__)
                    after = None
                self._delivered_through = after
                self._reader = asyncio.ensure_future(self._deliver_forever(after))

    async def emit(self, event: str, args: tuple[Any, ...], rooms: list[str]) -> None:
        entry = jsonutil.dumps({"event": event, "args": args, "rooms": rooms})
        try:
            await self._append(keys=[self._stream], args=[entry, " ".join(rooms), *self._limits])
        except aioredis.TimeoutError:
            # Sent, unanswered: Redis may still append it, and the readers deliver it then.
            # Delivering it here as well could deliver it twice.
            log.error("message %r: Redis did not answer the append; it may be lost", event)
        except aioredis.RedisError as error:
            log.warning(
                "message not kept for recovery: Redis failed (%s); delivered to this "
                "process's sockets only, without position",
                type(error).__name__,
            )
            await self._sio.emit(event, args, to=rooms, namespace=NAMESPACE, ignore_queue=True)

    async def head(self) -> str | None:
        try:
            return await self._newest()
        except aioredis.RedisError as error:
            log.warning("message history: Redis failed (%s)", type(error).__name__)
            return None

    async def _newest(self) -> str:
        # The append script never trims a stream's newest entry and the stream never
        # expires: no entry means no stream (nothing emitted yet, or Redis lost it).
        newest = await self._redis.xrevrange(self._stream, count=1)
        return str(newest[0][0]) if newest else EMPTY

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        """The entries after ``position`` up to those this process's reader has delivered
        (the later ones reach the socket through its hold)."""
        after = stream_id(position)
        if after is None or after > (stream_id(await self._newest()) or (0, 0)):
            return INCOMPLETE
        through = await self._reader_past(after)
        if through is None:
            return INCOMPLETE
        wanted = set(rooms)
        entries: list[Entry] = []
        cursor = f"({position}"
        while True:
            batch = await self._redis.xrange(
                self._stream, min=cursor, max=through, count=REPLAY_BATCH
            )
            for entry_id, fields in batch:
                if wanted.isdisjoint(fields.get("r", "").split(" ")):
                    continue  # not for this socket: not even decoded
                entry = _entry(entry_id, fields)
                if entry is not None:
                    entries.append(entry)
            if len(batch) < REPLAY_BATCH:
                break
            cursor = f"({batch[-1][0]}"
        if await self._nothing_lost_after(str(position), after):
            return Replay(complete=True, entries=entries, through=through)
        return INCOMPLETE

    async def _reader_past(self, after: tuple[int, int]) -> str | None:
        """Wait (briefly) until this process's reader has delivered the entry at ``after``:
        a client may come back from a process whose reader was ahead of this one's.
        None if it does not within READER_WAIT_SECONDS."""
        deadline = asyncio.get_running_loop().time() + READER_WAIT_SECONDS
        while True:
            through = self._delivered_through
            if through is not None and (stream_id(through) or (0, 0)) >= after:
                return through
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.01)

    def is_after(self, position: str, than: str) -> bool:
        first, second = stream_id(position), stream_id(than)
        return first is not None and second is not None and first > second

    async def _nothing_lost_after(self, position: str, after: tuple[int, int]) -> bool:
        """Whether every entry after ``position`` is still in the stream. Asked after the
        entries were read: trimming only ever removes the oldest, so what holds now held
        during the read."""
        if await self._redis.xrange(self._stream, min=position, max=position):
            return True  # its own entry is still kept
        first = await self._redis.xrange(self._stream, count=1)
        if not first:
            return position == EMPTY  # no stream: nothing was ever emitted (or Redis lost it)
        first_id, fields = first[0]
        previous = fields.get("p")
        if previous == FIRST:  # the stream's first entry ever (or since Redis lost it)
            return position == EMPTY
        # The oldest entry kept comes right after the position: nothing between was dropped.
        return (stream_id(first_id) or (0, 0)) > after >= (stream_id(previous) or (0, 0))

    async def _deliver_forever(self, after: str | None) -> None:
        pause = 1.0
        while not self._closing:
            try:
                if after is None:
                    after = self._delivered_through = await self._newest()
                reply = await self._reading.xread(
                    {self._stream: after}, count=READ_BATCH, block=BLOCK_MS
                )
                pause = 1.0
            except aioredis.RedisError as error:
                if self._closing:
                    return
                log.warning(
                    "message history: reading the stream failed (%s); retrying in %.0fs",
                    type(error).__name__,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            for _stream, batch in reply:
                for entry_id, fields in batch:
                    if not _follows(fields.get("p"), after):
                        await self._entries_were_lost(after, entry_id)
                    # Marked before delivery starts: which sockets an entry reaches is
                    # decided as soon as it does, with no await in between.
                    after = self._delivered_through = entry_id
                    await self._deliver(_entry(entry_id, fields))

    async def _entries_were_lost(self, delivered: str, next_id: str) -> None:
        """Entries after ``delivered`` were trimmed (or lost with Redis) before this
        process read them: its sockets missed them, and their clients' positions cannot
        tell. Close their transports: the clients reconnect, and their recovery says
        ``complete: false`` (reload). Rare: a reader that fell RECOVERY_MAX_MESSAGES
        behind, or a Redis that lost the stream."""
        log.error(
            "message history: entries between %s and %s were gone before this process "
            "delivered them; closing its sockets so their clients recover",
            delivered,
            next_id,
        )
        await self._sio.close_transports()

    async def _deliver(self, entry: Entry | None) -> None:
        if entry is None:
            return
        try:
            await self._sio.emit(
                entry.event,
                entry.delivered_args(),
                to=sorted(entry.rooms),
                namespace=NAMESPACE,
                ignore_queue=True,  # every process reads the stream itself
            )
        except Exception:
            log.exception("message history: delivering %s failed", entry.position)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=1)
            if not self._reader.done():
                # A cancelled XREAD can stay blocked in the client: cut its connection.
                await self._reading.connection_pool.disconnect()
                await asyncio.wait({self._reader}, timeout=5)
            if self._reader.done() and not self._reader.cancelled():
                self._reader.exception()  # retrieved: a failure at close is not news
        await self._reading.aclose()
        await self._redis.aclose()


def _follows(previous: str | None, delivered: str) -> bool:
    """Whether an entry whose previous id is ``previous`` comes right after ``delivered``."""
    return previous == delivered or (delivered == EMPTY and previous == FIRST)


def _entry(entry_id: str, fields: dict[str, str]) -> Entry | None:
    try:
        record = jsonutil.loads(fields["m"])
        return Entry(entry_id, record["event"], tuple(record["args"]), frozenset(record["rooms"]))
    except (KeyError, TypeError, ValueError):
        log.warning("message history: entry %s is not one of ours; skipped", entry_id)
        return None
