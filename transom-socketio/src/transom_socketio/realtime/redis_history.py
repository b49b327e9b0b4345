"""The message history in one Redis stream, which also carries messages between processes.

``emit`` appends the event to the stream ``<REDIS_CHANNEL>:history`` (one Lua
script: XADD, then trim by count and by age, so the stream never outgrows
RECOVERY_MAX_MESSAGES or RECOVERY_RETENTION_SECONDS). Every web process reads the
stream with a blocking XREAD and delivers each entry to its own sockets, with its
position (the entry's id, enciphered: realtime/positions.py). So every process
delivers in the stream's order, and a socket recovers the same messages on whichever
process it reconnects to.

A process cut off from Redis resumes reading after the last entry it delivered, so
messages emitted by other processes meanwhile still arrive (late, in order) as
long as they are in the stream. While Redis refuses the append, ``emit`` delivers
through python-socketio's own path instead: this process's sockets still get the
message, without a position (it cannot be recovered).

Replays read an index, ``<stream>:index``: the same entries under the same ids, without
their payloads (the append script writes and trims both). One Lua script (``_SCAN``)
looks at SCAN_CHUNK index entries a call: it checks that each follows the one before
it (nothing was trimmed in between), keeps those addressed to the socket's rooms and not
retracted, and answers their number (a replay's first pass) or, REPLAY_CHUNK at a time,
their payloads from the stream (the second). Entries for other users never leave
Redis, and their payloads are not even read. An emit with a ``key`` stores it in the
index entry and marks the key (``<stream>:key:<key>``, expiring with the retention);
``edit`` records a retraction or replacement (``<stream>:edit:<key>``) only for a marked
key, so edits never outnumber the keyed entries of the retention window.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from typing import Any, cast

import redis.asyncio as aioredis
import socketio

from .. import jsonutil
from .history import (
    INCOMPLETE,
    REPLAY_CHUNK,
    RETRACTED,
    SCAN_CHUNK,
    EntriesLost,
    Entry,
    PositionMeta,
    Replay,
    edited,
)
from .positions import PositionCodec
from .redis_fail_fast import REDIS_TIMEOUT_SECONDS
from .rooms import NAMESPACE

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
EMPTY = "0-0"  # the position before the first entry of a stream
READ_BATCH = 512
BLOCK_MS = 10_000
READER_WAIT_SECONDS = 5.0

FIRST = "new"  # the previous id of a stream's first entry

RETRACTION = "-"  # an edit's value that retracts its key (a replacement is a JSON list)

# KEYS: the stream, its index, then (for an entry with a key) the key's mark. ARGV: the
# entry, its rooms, the most entries kept, the retention in ms, its key. Each entry names
# the one before it ('p'), so a reader or a replay can tell when entries were trimmed (or
# lost) before it read them. The newest entry is never trimmed: the cutoff is older.
_APPEND = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = 'new'
if #last > 0 then previous = last[1][1] end
local id = redis.call(
  'XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'p', previous, 'r', ARGV[2], 'm', ARGV[1])
-- An index that does not end where the stream did (the stream was lost, or came from a
-- release without one) starts again: replays from before then are incomplete.
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 and top[1][1] ~= previous then redis.call('DEL', KEYS[2]) end
if KEYS[3] then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id, 'p', previous, 'r', ARGV[2], 'k', ARGV[5])
  redis.call('SET', KEYS[3], id, 'PX', ARGV[4])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id, 'p', previous, 'r', ARGV[2])
end
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
if oldest > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', oldest)
  redis.call('XTRIM', KEYS[2], 'MINID', oldest)
end
return id
"""

# KEYS: the key's mark, its edit. ARGV: the edit, the retention in ms, RETRACTION. Only
# a key that an entry of the retention window carries is edited, and a retracted one is
# retracted for good (an update racing a delete must not bring a message back).
_EDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the index, the stream. ARGV: the id to read after, the last id to read, the most
# index entries to look at, the most entries to return (0: only count them), the prefix of
# edit keys, then the socket's rooms. Answers {the last id looked at, 'more' | 'done' |
# 'lost', the number of entries found, then id, payload, edit of each entry returned}. An
# entry found is for one of the rooms and not retracted; 'lost': an entry does not follow
# the one before it, or is gone from the stream.
_SCAN = """
local cursor, through = ARGV[1], ARGV[2]
local limit, wanted, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local rooms = {}
for i = 6, #ARGV do rooms[#rooms + 1] = ' ' .. ARGV[i] .. ' ' end
local entries = redis.call('XRANGE', KEYS[1], '(' .. cursor, through, 'COUNT', limit)
if #entries == 0 then
  if cursor == through then return {cursor, 'done', 0} end
  return {cursor, 'lost', 0}
end
local previous = cursor
if previous == '0-0' then previous = 'new' end
local found, reply, full = 0, {}, false
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  local p, r, k = nil, '', nil
  for j = 1, #fields, 2 do
    local name = fields[j]
    if name == 'p' then p = fields[j + 1]
    elseif name == 'r' then r = fields[j + 1]
    elseif name == 'k' then k = fields[j + 1] end
  end
  if p ~= previous then return {previous, 'lost', found} end
  previous = id
  local match, padded = false, ' ' .. r .. ' '
  for _, room in ipairs(rooms) do
    if string.find(padded, room, 1, true) then match = true break end
  end
  local edit = ''
  if match and k then edit = redis.call('GET', prefix .. k) or '' end
  if match and edit ~= '-' then
    found = found + 1
    if wanted > 0 then
      local kept = redis.call('XRANGE', KEYS[2], id, id)
      if #kept == 0 then return {previous, 'lost', found} end
      local payload = ''
      for j = 1, #kept[1][2], 2 do
        if kept[1][2][j] == 'm' then payload = kept[1][2][j + 1] end
      end
      reply[#reply + 1] = id
      reply[#reply + 1] = payload
      reply[#reply + 1] = edit
      if found == wanted then full = true break end
    end
  end
end
-- Done once the last id is reached, or the index has no more entries up to it.
local state = 'more'
if previous == through or (not full and #entries < limit) then state = 'done' end
local head = {previous, state, found}
for _, value in ipairs(reply) do head[#head + 1] = value end
return head
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


class RedisReplay(Replay):
    """A replay read from the stream by ``_SCAN``: counted first (``count_entries``),
    then read ``chunk()`` by ``chunk()`` from where the last one stopped."""

    def __init__(
        self, history: RedisHistory, after: str, through: str, rooms: Collection[str]
    ) -> None:
        self.complete = True
        self.count = 0
        self.through = through
        self._history = history
        self._after = after
        self._rooms = list(rooms)
        self._done = False

    async def count_entries(self) -> bool:
        """Count the entries this replay will send; False if some were lost."""
        cursor = self._after
        while True:
            cursor, state, found, _rows = await self._history.scan(
                cursor, self.through, 0, self._rooms
            )
            if state == "lost":
                return False
            self.count += found
            if state == "done":
                return True

    async def chunk(self) -> list[Entry]:
        entries: list[Entry] = []
        while not entries and not self._done:
            self._after, state, _found, rows = await self._history.scan(
                self._after, self.through, REPLAY_CHUNK, self._rooms
            )
            if state == "lost":
                raise EntriesLost(f"entries after {self._after} are gone")
            self._done = state == "done"
            for entry_id, payload, edit in rows:
                entry = _entry(entry_id, {"m": payload})
                if entry is not None and edit:
                    entry = edited(entry, tuple(jsonutil.loads(edit)))
                if entry is not None:
                    entries.append(entry)
        return entries


class RedisHistory:
    """The history and transport of the message client's emits, for every process."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        redis_url: str,
        channel: str,
        retention_seconds: int,
        max_messages: int,
        codec: PositionCodec,
    ) -> None:
        self._sio = sio
        self._codec = codec
        self._stream = f"{channel}:history"
        self._index = f"{self._stream}:index"
        self._redis = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._append = self._redis.register_script(_APPEND)
        self._edit = self._redis.register_script(_EDIT)
        self._scan = self._redis.register_script(_SCAN)
        self._limits = (max_messages, retention_seconds * 1000)
        # A connection of its own for the reader: XREAD blocks it for up to BLOCK_MS.
        self._reading = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=BLOCK_MS / 1000 + REDIS_TIMEOUT_SECONDS,
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

    async def emit(
        self, event: str, args: tuple[Any, ...], rooms: list[str], key: str | None = None
    ) -> None:
        entry = jsonutil.dumps({"event": event, "args": args, "rooms": rooms})
        keys = [self._stream, self._index]
        if key is not None:
            keys.append(self._key_mark(key))
        try:
            await self._append(keys=keys, args=[entry, " ".join(rooms), *self._limits, key or ""])
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

    async def edit(self, key: str, args: tuple[Any, ...] | None) -> None:
        value = RETRACTION if args is RETRACTED else jsonutil.dumps(list(args))
        try:
            await self._edit(
                keys=[self._key_mark(key), self._edit_prefix + key],
                args=[value, self._limits[1], RETRACTION],
            )
        except aioredis.RedisError as error:
            log.error(
                "message history: Redis failed (%s); an edit was not recorded, so a "
                "recovering client may receive the original",
                type(error).__name__,
            )

    def _key_mark(self, key: str) -> str:
        return f"{self._stream}:key:{key}"

    @property
    def _edit_prefix(self) -> str:
        return f"{self._stream}:edit:"

    async def scan(
        self, after: str, through: str, wanted: int, rooms: list[str]
    ) -> tuple[str, str, int, list[tuple[str, str, str]]]:
        """One ``_SCAN`` call: (the last id looked at, its state, entries found, and up
        to ``wanted`` of them as (id, payload, edit))."""
        reply = await self._scan(
            keys=[self._index, self._stream],
            args=[after, through, SCAN_CHUNK, wanted, self._edit_prefix, *rooms],
        )
        rest = reply[3:]
        rows = [(rest[i], rest[i + 1], rest[i + 2]) for i in range(0, len(rest), 3)]
        return str(reply[0]), str(reply[1]), int(reply[2]), rows

    async def head(self) -> str | None:
        try:
            return self._position(await self._newest())
        except aioredis.RedisError as error:
            log.warning("message history: Redis failed (%s)", type(error).__name__)
            return None

    async def _newest(self) -> str:
        # The append script never trims a stream's newest entry and the stream never
        # expires: no entry means no stream (nothing emitted yet, or Redis lost it).
        newest = await self._redis.xrevrange(self._stream, count=1)
        return str(newest[0][0]) if newest else EMPTY

    def _position(self, entry_id: str) -> str:
        milliseconds, _, sequence = entry_id.partition("-")
        return self._codec.encode(int(milliseconds), int(sequence))

    def delivered_args(self, entry: Entry) -> tuple[Any, ...]:
        meta = PositionMeta(position=self._position(entry.id))
        meta.id = entry.id
        return (*entry.args, meta)

    async def since(self, position: object, rooms: Collection[str]) -> Replay:
        """The entries after ``position`` up to those this process's reader has delivered
        (the later ones reach the socket through its hold)."""
        after = self._codec.decode(position)
        if after is None or after > (stream_id(await self._newest()) or (0, 0)):
            return INCOMPLETE
        through = await self._reader_past(after)
        if through is None:
            return INCOMPLETE
        replay = RedisReplay(self, f"{after[0]}-{after[1]}", through, rooms)
        return replay if await replay.count_entries() else INCOMPLETE

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

    def is_after(self, entry_id: Any, than: Any) -> bool:
        first, second = stream_id(entry_id), stream_id(than)
        return first is not None and second is not None and first > second

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
            # decode_responses: [(stream, [(entry id, {field: value}), ...])]
            for _stream, batch in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply):
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
                self.delivered_args(entry),
                to=sorted(entry.rooms),
                namespace=NAMESPACE,
                ignore_queue=True,  # every process reads the stream itself
            )
        except Exception:
            log.exception("message history: delivering %s failed", entry.id)

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
