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

Replays read an index per room, ``<stream>:sent-to:<hash of the room>``: the ids of
the entries emitted to that room, without their payloads. The append script writes
them, trims them with the stream, and deletes an index once the stream holds none of
its entries (``<stream>:indexes`` lists the index keys by their last entry), so Redis
keeps no more index than the stream's window needs. An entry for more rooms than
INDEXED_ROOMS_AT_MOST goes to the wide index (``<stream>:wide``) with the set of its
rooms' hashes instead. One Lua script (``_SCAN``) merges the indexes of a socket's
rooms and the wide index, SCAN_CHUNK entries a call at most, and answers their number
(a replay's first pass) or, REPLAY_CHUNK at a time, their payloads from the stream (the
second). So a replay reads only the entries addressed to its socket: its cost to Redis
does not grow with other users' traffic. Before reading on, each call checks that
nothing after its cursor is missing (trimmed, lost with Redis, older than the
retention, or appended by a release that kept no indexes): then the replay is
incomplete. A Redis that may evict keys could drop an index and not the stream: the
history warns at start-up unless its maxmemory-policy is noeviction.

An emit with a ``key`` stores it in its index entries and marks the key
(``<stream>:key:<key>``, expiring with the retention); ``edit`` records a retraction or
replacement (``<stream>:edit:<key>``) only for a marked key, so edits never outnumber
the keyed entries of the retention window.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Collection
from typing import Any, cast

import redis.asyncio as aioredis
import socketio

from .. import jsonutil
from ..logs import EveryFewSeconds
from ..ratelimit import bucket_shape
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
from .redis_fail_fast import REDIS_TIMEOUT_SECONDS, FailFast, pooled_client
from .rooms import NAMESPACE

log = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
EMPTY = "0-0"  # the position before the first entry of a stream
READ_BATCH = 512
BLOCK_MS = 10_000
READER_WAIT_SECONDS = 5.0

FIRST = "new"  # the previous id of a stream's first entry

RETRACTION = "-"  # an edit's value that retracts its key (a replacement is a JSON list)
# An entry sent to more rooms than this is not written to their indexes (that would hold
# the shared Redis for ~6 µs a room) but to the wide index, with the set of its rooms.
INDEXED_ROOMS_AT_MOST = 100
# Index keys an append deletes at most once the stream no longer holds any of their entries.
STALE_INDEXES_PER_APPEND = 100

# Lua helpers shared by the scripts: the field of an entry, and the order of two ids.
_LUA_HELPERS = """
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local function parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function before(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am < bm or (am == bm and as < bs)
end
-- A room index holds an entry as a member of a sorted set (all scores 0, so in the
-- order of their bytes): its id as 24 hex digits, '|', its key ('' for none).
local function hex(id)
  local ms, seq = parts(id)
  return string.format('%012x%012x', ms, seq)
end
local function id_of(hex_id)
  local ms, seq = tonumber(string.sub(hex_id, 1, 12), 16), tonumber(string.sub(hex_id, 13, 24), 16)
  return string.format('%d-%d', ms, seq)
end
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
"""

# KEYS: the stream, the id after which every entry has its room indexes, the single index
# of the releases before 0.3.9 (removed), the key's mark, the registry of index keys (a
# sorted set scored by their last entry's time), the wide index, then the index of each
# room (none for a wide entry). ARGV: the entry, the most entries kept, the retention in
# ms, its key ('' for none), the most stale index keys to delete, then (a wide entry
# only) the hashes of its rooms. Each entry names the one before it ('p'), so a reader
# or a replay can tell when entries were trimmed (or lost) before it read them, and says
# it was indexed ('v'): after an entry of an earlier release (or none), the entries from
# this one on are the first the indexes hold. The newest entry is never trimmed: the
# cutoff is older. An index key goes once the stream no longer holds its last entry, so a
# replay never misses an index it needs, and they take no more room than the stream's
# window of entries (times their rooms).
_APPEND = (
    _LUA_HELPERS
    + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous, indexed = 'new', false
if #last > 0 then
  previous = last[1][1]
  indexed = field(last[1][2], 'v') ~= nil
end
local id = redis.call(
  'XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'p', previous, 'm', ARGV[1], 'v', '1')
if not indexed then
  if previous == 'new' then previous = '0-0' end
  redis.call('SET', KEYS[2], previous)
  redis.call('UNLINK', KEYS[3])
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], id, 'PX', ARGV[3]) end
local oldest = now_ms() - tonumber(ARGV[3])
if oldest > 0 then redis.call('XTRIM', KEYS[1], 'MINID', oldest) end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
local at, ms = hex(id), parts(id)
local member, gone = at .. '|' .. ARGV[4], '(' .. hex(first)
if #KEYS > 6 then
  for i = 7, #KEYS do
    redis.call('ZADD', KEYS[i], 0, member)
    redis.call('ZREMRANGEBYLEX', KEYS[i], '-', gone)
    redis.call('ZADD', KEYS[5], ms, KEYS[i])
  end
else
  local rooms = KEYS[6] .. ':' .. at
  for i = 6, #ARGV, 1000 do
    redis.call('SADD', rooms, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('ZADD', KEYS[6], 0, member)
  redis.call('ZADD', KEYS[5], ms, rooms)
end
redis.call('ZREMRANGEBYLEX', KEYS[6], '-', gone)
local stale = redis.call(
  'ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. parts(first), 'LIMIT', 0, tonumber(ARGV[5]))
if #stale > 0 then
  redis.call('UNLINK', unpack(stale))
  redis.call('ZREM', KEYS[5], unpack(stale))
end
return id
"""
)

# KEYS: the stream. ARGV: the most entries kept. A loss marker: an entry whose 'p' names
# no entry ('lost'), so every reader finds its chain broken there (it closes its sockets:
# their clients recover, told complete: false), and whose id goes to '<stream>:losses',
# which a replay across it finds (the set keeps only ids the stream still holds). Like an
# append, it records where indexed entries begin when it is the first one (a stream that
# Redis lost with the outage) or follows an entry of a release before 0.3.9.
_MARK_LOSS = (
    _LUA_HELPERS
    + """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then
  redis.call('SET', KEYS[1] .. ':indexed-after', '0-0')
elseif field(last[1][2], 'v') == nil then
  redis.call('SET', KEYS[1] .. ':indexed-after', last[1][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'p', 'lost', 'lost', '1', 'v', '1')
local losses = KEYS[1] .. ':losses'
redis.call('ZADD', losses, 0, hex(id))
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
redis.call('ZREMRANGEBYLEX', losses, '-', '(' .. hex(first))
return id
"""
)

# KEYS: the key's mark, its edit. ARGV: the edit, the retention in ms, RETRACTION. Only
# a key that an entry of the retention window carries is edited, and a retracted one is
# retracted for good (an update racing a delete must not bring a message back).
_EDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the stream, the id after which every entry is indexed, the wide index, then the
# index of each of the socket's rooms. ARGV: the id to read after (the cursor), the last
# id to read, the most index entries to look at, the most entries to return (0: only
# count them), the prefix of edit keys, the retention in ms, then the hashes of the
# socket's rooms (for the wide index's entries). Answers {the new cursor, 'more' | 'done'
# | 'lost', the number of entries found, the number of index entries looked at, then id,
# payload, edit of each entry returned}. An entry found is for one of the rooms and not
# retracted; 'lost': something after the cursor is missing (the stream's entry after it
# does not follow it, or is older than the retention; or an entry was not indexed), or
# an entry is gone from the stream.
_SCAN = (
    _LUA_HELPERS
    + """
local cursor, through = ARGV[1], ARGV[2]
local limit, wanted, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if cursor == through then return {through, 'done', 0, 0} end
local indexed = redis.call('GET', KEYS[2])
if not indexed or before(cursor, indexed) then return {cursor, 'lost', 0, 0} end
local following = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', 1)
if #following == 0 then return {cursor, 'lost', 0, 0} end
local expected = cursor
if expected == '0-0' then expected = 'new' end
if field(following[1][2], 'p') ~= expected then return {cursor, 'lost', 0, 0} end
local first_ms = parts(following[1][1])
if first_ms < now_ms() - tonumber(ARGV[6]) then return {cursor, 'lost', 0, 0} end
local marked = redis.call(
  'ZRANGEBYLEX', KEYS[1] .. ':losses', '(' .. hex(cursor), '[' .. hex(through), 'LIMIT', 0, 1)
if #marked > 0 then return {cursor, 'lost', 0, 0} end
local last = redis.call('XRANGE', KEYS[1], through, through)
if #last == 0 or field(last[1][2], 'v') == nil then return {cursor, 'lost', 0, 0} end
-- Merge the indexes: take every id up to the smallest last id of a full page.
local per = math.max(2, math.floor(limit / (#KEYS - 2)))
if wanted > 0 and wanted < per then per = math.max(2, wanted) end
-- '~' sorts after '|': every member of an id lies between its id and its id .. '~'.
local low, high = '(' .. hex(cursor) .. '~', '[' .. hex(through) .. '~'
local pages, boundary = {}, hex(through)
for i = 3, #KEYS do
  local page = redis.call('ZRANGEBYLEX', KEYS[i], low, high, 'LIMIT', 0, per)
  pages[#pages + 1] = page
  if #page == per then
    local last_at = string.sub(page[#page], 1, 24)
    if last_at < boundary then boundary = last_at end
  end
end
local ids, keys, looked = {}, {}, 0
for number, page in ipairs(pages) do
  for _, member in ipairs(page) do
    local at = string.sub(member, 1, 24)
    looked = looked + 1
    if keys[at] == nil and at <= boundary then
      local mine = true
      if number == 1 then  -- the wide index: only if the entry was sent to one of the rooms
        mine = false
        local rooms = KEYS[3] .. ':' .. at
        for j = 7, #ARGV do
          if redis.call('SISMEMBER', rooms, ARGV[j]) == 1 then
            mine = true
            break
          end
        end
      end
      if mine then
        ids[#ids + 1] = at
        keys[at] = string.sub(member, 26)
      end
    end
  end
end
table.sort(ids)
local found, reply, reached = 0, {}, boundary
for _, at in ipairs(ids) do
  local k, edit = keys[at], ''
  if k ~= '' then edit = redis.call('GET', prefix .. k) or '' end
  if edit ~= '-' then
    found = found + 1
    if wanted > 0 then
      local id = id_of(at)
      local kept = redis.call('XRANGE', KEYS[1], id, id)
      if #kept == 0 then return {cursor, 'lost', found, looked} end
      reply[#reply + 1] = id
      reply[#reply + 1] = field(kept[1][2], 'm') or ''
      reply[#reply + 1] = edit
      if found == wanted then
        reached = at
        break
      end
    end
  end
end
local state = 'more'
if reached == hex(through) then state = 'done' end
local head = {id_of(reached), state, found, looked}
for _, value in ipairs(reply) do head[#head + 1] = value end
return head
"""
)


# KEYS: a user's recoveries (a token bucket). ARGV: tokens per ms, the most tokens held.
# Answers 1 when a token was taken: the same bucket as ratelimit.RateLimiter, held in Redis
# so that it counts the user's recoveries on every process.
_RECOVERY_BUCKET = (
    _LUA_HELPERS
    + """
local now, rate, burst = now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens, updated = tonumber(held[1]), tonumber(held[2])
if tokens == nil or updated == nil then tokens, updated = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate))
return taken
"""
)


def stream_id(position: object) -> tuple[int, int] | None:
    """A stream id as a comparable pair, or None for anything else."""
    match = _STREAM_ID.fullmatch(position) if isinstance(position, str) else None
    if match is None:
        return None
    pair = (int(match[1]), int(match[2]))
    if max(pair) >= 2**64 or position != f"{pair[0]}-{pair[1]}":
        return None  # out of range, or not written the way Redis writes ids
    return pair


Row = tuple[str, str, str]  # a replayed entry's id, payload and edit ('' for none)


class RedisReplay(Replay):
    """A replay read from the stream by ``_SCAN``: counted first (``count_entries``),
    then read ``chunk()`` by ``chunk()`` from where the last one stopped."""

    def __init__(
        self, history: RedisHistory, after: str, through: str, rooms: Collection[str]
    ) -> None:
        self.complete = True
        self.count = 0
        self.through = through
        # Index entries the replay's scans looked at: its cost to Redis, which grows with
        # the entries addressed to its rooms, not with the rest of the history.
        self.looked = 0
        self._history = history
        self._after = after
        self._rooms = list(rooms)
        self._done = False

    async def count_entries(self) -> bool:
        """Count the entries this replay will send; False if some were lost."""
        cursor = self._after
        while True:
            cursor, state, found, _rows = await self._scan(cursor, 0)
            if state == "lost":
                return False
            self.count += found
            if state == "done":
                return True

    async def chunk(self) -> list[Entry]:
        entries: list[Entry] = []
        while not entries and not self._done:
            self._after, state, _found, rows = await self._scan(self._after, REPLAY_CHUNK)
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

    async def _scan(self, cursor: str, wanted: int) -> tuple[str, str, int, list[Row]]:
        cursor, state, found, looked, rows = await self._history.scan(
            cursor, self.through, wanted, self._rooms
        )
        self.looked += looked
        return cursor, state, found, rows


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
        recoveries_per_minute: int = 0,
    ) -> None:
        self._sio = sio
        self._codec = codec
        self._stream = f"{channel}:history"
        self._indexed_after = f"{self._stream}:indexed-after"
        self._index_before_0_3_9 = f"{self._stream}:index"
        self._index_keys = f"{self._stream}:indexes"
        self._wide_index = f"{self._stream}:wide"
        self._redis = pooled_client(redis_url, decode_responses=True)
        self._fail_fast = FailFast()  # a stalled Redis costs a socket token one timeout
        self._append_failed = EveryFewSeconds()  # a stalled Redis fails every emit
        self._append = self._redis.register_script(_APPEND)
        self._edit = self._redis.register_script(_EDIT)
        self._scan = self._redis.register_script(_SCAN)
        self._mark_loss = self._redis.register_script(_MARK_LOSS)
        # Appending a loss marker once Redis answers again (``_losing``).
        self._marking: asyncio.Future[None] | None = None
        self._recovery_bucket = self._redis.register_script(_RECOVERY_BUCKET)
        self._recoveries_per_minute = recoveries_per_minute
        self._max_messages = max_messages
        self._retention_ms = retention_seconds * 1000
        # A connection of its own for the reader: XREAD blocks it for up to BLOCK_MS.
        self._reading = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=BLOCK_MS / 1000 + REDIS_TIMEOUT_SECONDS,
        )
        self._reader: asyncio.Future[None] | None = None
        # Socket -> the newest entry it had when it came back, for the sockets that came
        # back ahead of this process's reader (``known_through``).
        self._known: dict[str, tuple[int, int]] = {}
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
                    await self._warn_if_evicting()
                except aioredis.RedisError as error:
                    log.warning("message history: Redis failed (%s)", type(error).__name__)
                    after = None
                self._delivered_through = after
                self._reader = asyncio.ensure_future(self._deliver_forever(after))

    async def _warn_if_evicting(self) -> None:
        """A Redis that may evict keys can drop an index (or an edit) while the stream
        keeps its entries: a recovery would then miss them and still say complete."""
        policy = (await self._redis.info("memory")).get("maxmemory_policy", "noeviction")
        if policy != "noeviction":
            log.warning(
                "Redis may evict keys (maxmemory-policy %s): recoveries may miss messages "
                "and not know it; set maxmemory-policy noeviction (the engine's security "
                "notes, Recovery: python -m transom_socketio.docs security)",
                policy,
            )

    async def emit(
        self, event: str, args: tuple[Any, ...], rooms: list[str], key: str | None = None
    ) -> None:
        entry = jsonutil.dumps({"event": event, "args": args, "rooms": rooms})
        keys = [
            self._stream,
            self._indexed_after,
            self._index_before_0_3_9,
            self._key_mark(key or ""),
            self._index_keys,
            self._wide_index,
        ]
        script_args: list[str | int] = [
            entry,
            self._max_messages,
            self._retention_ms,
            key or "",
            STALE_INDEXES_PER_APPEND,
        ]
        if len(rooms) <= INDEXED_ROOMS_AT_MOST:
            keys += map(self.room_index, rooms)
        else:
            script_args += map(room_hash, rooms)
        try:
            await self._append(keys=keys, args=script_args)
        except aioredis.TimeoutError:
            # Sent, unanswered: Redis may still append it, and the readers deliver it then.
            # Delivering it here as well could deliver it twice.
            held = self._append_failed.due()
            if held is not None:
                log.error(
                    "message %r: Redis did not answer the append; it may be lost "
                    "(%d more such failures since the last line)",
                    event,
                    held,
                )
            self._losing()
        except aioredis.RedisError as error:
            held = self._append_failed.due()
            if held is not None:
                log.warning(
                    "message not kept for recovery: Redis failed (%s); delivered to this "
                    "process's sockets only, without position (%d more such failures "
                    "since the last line)",
                    type(error).__name__,
                    held,
                )
            self._losing()
            await self._sio.emit(event, args, to=rooms, namespace=NAMESPACE, ignore_queue=True)

    def _losing(self) -> None:
        """A message this process emitted is not (or may not be) in the stream: once Redis
        answers again, a loss marker goes in, so the sockets of every process, and every
        replay across it, are told (``complete: false``) rather than miss it unawares
        (found by a review: after an outage, the other processes' clients never knew)."""
        if self._marking is None or self._marking.done():
            self._marking = asyncio.ensure_future(self._mark_loss_when_back())

    async def _mark_loss_when_back(self) -> None:
        pause = 0.5
        while not self._closing:
            try:
                await self._mark_loss(keys=[self._stream], args=[self._max_messages])
            except aioredis.RedisError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            log.warning(
                "message history: Redis answers again; marked where messages were lost, "
                "so that every client recovers (complete: false)"
            )
            return

    async def edit(self, key: str, args: tuple[Any, ...] | None) -> None:
        value = RETRACTION if args is RETRACTED else jsonutil.dumps(list(args))
        try:
            await self._edit(
                keys=[self._key_mark(key), self._edit_prefix + key],
                args=[value, self._retention_ms, RETRACTION],
            )
        except aioredis.RedisError as error:
            log.error(
                "message history: Redis failed (%s); an edit was not recorded, so a "
                "recovering client may receive the original",
                type(error).__name__,
            )

    def room_index(self, room: str) -> str:
        """The key of the index of the entries emitted to ``room``."""
        return f"{self._stream}:sent-to:{room_hash(room)}"

    def _key_mark(self, key: str) -> str:
        return f"{self._stream}:key:{key}"

    @property
    def _edit_prefix(self) -> str:
        return f"{self._stream}:edit:"

    async def scan(
        self, after: str, through: str, wanted: int, rooms: list[str]
    ) -> tuple[str, str, int, int, list[Row]]:
        """One ``_SCAN`` call over the indexes of ``rooms`` and the wide index: (the new
        cursor, its state, entries found, index entries looked at, and up to ``wanted``
        of the entries found as rows)."""
        reply = await self._scan(
            keys=[
                self._stream,
                self._indexed_after,
                self._wide_index,
                *map(self.room_index, rooms),
            ],
            args=[
                after,
                through,
                SCAN_CHUNK,
                wanted,
                self._edit_prefix,
                self._retention_ms,
                *map(room_hash, rooms),
            ],
        )
        rest = reply[4:]
        rows = [(rest[i], rest[i + 1], rest[i + 2]) for i in range(0, len(rest), 3)]
        return str(reply[0]), str(reply[1]), int(reply[2]), int(reply[3]), rows

    async def head(self) -> str | None:
        try:
            with self._fail_fast:
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

    def known_through(self, sid: str, position: object) -> None:
        """A socket that came back with a position ahead of this process's reader (it was
        on a process whose reader was ahead): its recovery waits for the reader at most
        READER_WAIT_SECONDS and then says incomplete, but the reader, catching up, would
        deliver it the entries it had again (found by a review: 1,731 of them). Those
        deliveries skip it (``_skipping``) until the reader is past its position."""
        known = self._codec.decode(position)
        delivered = stream_id(self._delivered_through) if self._delivered_through else None
        if known is not None and (delivered is None or delivered < known):
            self._known[sid] = known

    def forget(self, sid: str) -> None:
        self._known.pop(sid, None)

    def _skipping(self, entry_id: str) -> list[str] | None:
        """The sockets that had the entry ``entry_id`` already (``known_through``); those
        the reader is now past, or at, are forgotten."""
        at = stream_id(entry_id)
        if at is None:
            return None
        skip = [sid for sid, known in self._known.items() if at <= known]
        for sid in [sid for sid, known in self._known.items() if at >= known]:
            del self._known[sid]
        return skip or None

    async def recovery_allowed(self, user_id: str) -> bool:
        if self._recoveries_per_minute <= 0:
            return True
        per_second, burst = bucket_shape(self._recoveries_per_minute)
        try:
            taken = await self._recovery_bucket(
                keys=[f"{self._stream}:recoveries:{user_id}"],
                args=[per_second / 1000, burst],
            )
        except aioredis.RedisError as error:
            log.warning("recovery refused: Redis failed (%s)", type(error).__name__)
            return False
        return bool(taken)

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
                        resumed = await self._entries_were_lost(after, entry_id)
                        if resumed is not None:
                            after = resumed
                            break  # the rest of the batch is before the head resumed at
                    # Marked before delivery starts: which sockets an entry reaches is
                    # decided as soon as it does, with no await in between.
                    after = self._delivered_through = entry_id
                    await self._deliver(_entry(entry_id, fields))

    async def _entries_were_lost(self, delivered: str, next_id: str) -> str | None:
        """Entries after ``delivered`` were trimmed (or lost with Redis) before this
        process read them: its sockets missed them, and their clients' positions cannot
        tell. Close their transports: the clients reconnect, and their recovery says
        ``complete: false`` (reload). Rare: a reader that fell RECOVERY_MAX_MESSAGES
        behind, or a Redis that lost the stream.

        The reader resumes at the stream's newest entry (returned; None if Redis does
        not answer, and it goes on from ``next_id``): from ``next_id``, a reader that
        fell behind found the next entries trimmed too, and closed every socket again
        at almost every batch (found by a review). Every socket is closed as it
        resumes, so none misses what it skips; a recovery across it says incomplete."""
        log.error(
            "message history: entries between %s and %s were gone before this process "
            "delivered them; closing its sockets so their clients recover",
            delivered,
            next_id,
        )
        try:
            resumed: str | None = await self._newest()
        except aioredis.RedisError:
            resumed = None
        if resumed is not None:
            self._delivered_through = resumed
        await self._sio.close_transports()
        return resumed

    async def _deliver(self, entry: Entry | None) -> None:
        if entry is None:
            return
        try:
            await self._sio.emit(
                entry.event,
                self.delivered_args(entry),
                to=sorted(entry.rooms),
                skip_sid=self._skipping(entry.id) if self._known else None,
                namespace=NAMESPACE,
                ignore_queue=True,  # every process reads the stream itself
            )
        except Exception:
            log.exception("message history: delivering %s failed", entry.id)

    async def close(self) -> None:
        self._closing = True
        if self._marking is not None:
            self._marking.cancel()
            await asyncio.wait({self._marking}, timeout=1)
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


@functools.lru_cache(maxsize=4096)
def room_hash(room: str) -> str:
    """What stands for a room in keys: never its name, part of which a client may choose
    (a channel's)."""
    return hashlib.sha256(room.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _follows(previous: str | None, delivered: str) -> bool:
    """Whether an entry whose previous id is ``previous`` comes right after ``delivered``."""
    return previous == delivered or (delivered == EMPTY and previous == FIRST)


def _entry(entry_id: str, fields: dict[str, str]) -> Entry | None:
    if "lost" in fields:
        return None  # a loss marker (_MARK_LOSS): nothing to deliver
    try:
        record = jsonutil.loads(fields["m"])
        return Entry(entry_id, record["event"], tuple(record["args"]), frozenset(record["rooms"]))
    except (KeyError, TypeError, ValueError):
        log.warning("message history: entry %s is not one of ours; skipped", entry_id)
        return None
