"""Who is in each presence channel across processes: ``RedisChannelPresence``.

The channel manager (realtime/channels.py) calls ``subscribed`` when a socket joins a
presence channel and ``unsubscribed`` when it leaves it (or disconnects); both return
the user's socket count in that channel after the change, on every live process, and
whether it is news for the channel's other subscribers (a ``join`` or, after a grace
period, a ``leave``), exactly as ``LocalChannelPresence`` (``channel_presence.py``)
does in one process; ``gone`` ends a grace period and ``members`` lists a channel (its
users with a socket, and those in their leave grace).

Channel names come from clients: they never reach a key. A channel is known in Redis by
the first 32 hex digits of the SHA-256 of its name (``<h>`` below); user ids (the
server's own) are used as they are, as in ``RedisPresence``. With ``<p>`` for
``<REDIS_CHANNEL>:channel-presence``:

- ``<p>:channel:<h>:user:<id>``, a hash of the user's socket counts in the channel by
  process id (what each transition totals);
- ``<p>:channel:<h>:users``, the set of users with a count there on some process (what
  ``members`` reads, checking each one's counts against the heartbeats);
- ``<p>:channel:<h>:leaving:<id>``, the user's *leaving* mark in the channel, set, read
  and cleared in the same scripts, so a user who leaves on one process and comes back
  on another within the grace is not announced at all; it expires on its own
  (``LEAVING_MARK_SECONDS`` after the grace) in case the process that set it stops;
- ``<p>:channel:<h>:leavers``, the sorted set of the users holding a leaving mark there,
  scored by the mark's deadline (Redis server time, ms): added and removed with the
  marks, by the same scripts, for ``members`` to list them (nobody was told they left)
  without a key per user to look up; an entry past its deadline (its mark expired) is
  not listed, and goes when the set is next read or added to; the set expires at its
  latest deadline (should processes with another grace share it);
- ``<p>:channel:<h>:quiet``, set while the channel is past its join/leave limit
  (``channel_presence.py``), set and cleared by the transitions, which count the
  channel's users (``SCARD`` of its set: users whose only counts are on a process that
  stopped are still in it until that process is forgotten); it expires
  ``QUIET_SECONDS`` after the last change, should a channel's users vanish with a
  forgotten process (a later change finds the channel past its limit again, and says
  so again);
- ``<p>:process:<id>``, a hash per process of the same counts by ``<h>:<user id>``
  (what a process's entries are found and deleted by once it is forgotten);
- ``<p>:processes``, the sorted set of each process's last heartbeat (Redis server time).

Each transition (a socket came, one went, a grace ended) is one Lua script that counts
and reads the live total at once, so each one is seen exactly once even when several
processes change the same user in the same channel at once. As with ``RedisPresence``
(``redis_presence.py``, whose constants these are), a process's counts are believed
only while its heartbeat is younger than ``MISSED_HEARTBEATS`` heartbeats (a process
always believes its own: it is running); each process refreshes its heartbeat every
PRESENCE_HEARTBEAT_SECONDS from one task started with its first subscription. After
``FORGOTTEN_AFTER_HEARTBEATS`` heartbeats without one, the next heartbeat of another
process deletes what the silent one kept, a bounded batch per heartbeat. The heartbeats
are this store's own (not ``RedisPresence``'s set): the two stores have their own
process ids, and forgetting a process here means deleting channel entries.

As in ``RedisPresence``, a grace whose mark has expired ends with ``gone`` true if the
user has no socket in the channel (a late leave rather than none), and a closed process
drops its heartbeat and deletes its entries at once.

Memory stays bounded: a hash or set whose last entry goes is deleted by Redis, so
the keys of a channel go with its last member (the marks and their set expire); a
process's hash expires if its heartbeats stop that long; entries a vanished deployment
left behind (no process left to forget it) go when their channel's members are next
read, or that user's count in it next changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid

import redis.asyncio as aioredis

from .channel_presence import ChannelCounted, JoinLeave, resume_at
from .redis_fail_fast import FailFast, pooled_client
from .redis_presence import FORGOTTEN_AFTER_HEARTBEATS, LEAVING_MARK_SECONDS, MISSED_HEARTBEATS

__all__ = ["RedisChannelPresence"]

log = logging.getLogger(__name__)

# Hex digits of a channel name's SHA-256 in its keys (128 bits).
CHANNEL_HASH_LENGTH = 32

# How many entries of forgotten processes one heartbeat deletes at most (the rest at the
# next ones), and how many a closing process deletes per round trip: Redis is never
# held long, however many channels a process was in.
FORGET_BATCH = 1000
# A closing process's round trips at most; what is left after them goes as a vanished
# process's entries do (see above).
CLOSE_ROUNDS = 100

# How long a channel's quiet mark outlives its last change (see above).
QUIET_SECONDS = 24 * 3600

# Deletes up to ``budget`` entries of ``process`` (prefix ``p``: '<p>:'), from its hash
# and from each channel's counts and users; when its hash is empty, the process leaves
# the heartbeat set. Returns what is left of the budget. Field: '<h>:<user id>'.
_FORGET = f"""
local function forget(heartbeats, p, process, budget)
  local hash = p .. 'process:' .. process
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', hash, cursor, 'COUNT', 100)
    cursor = page[1]
    local fields = page[2]
    for i = 1, #fields, 2 do
      local field = fields[i]
      local channel = p .. 'channel:' .. string.sub(field, 1, {CHANNEL_HASH_LENGTH})
      local user = string.sub(field, {CHANNEL_HASH_LENGTH + 2})
      local counts = channel .. ':user:' .. user
      redis.call('HDEL', counts, process)
      if redis.call('EXISTS', counts) == 0 then
        redis.call('SREM', channel .. ':users', user)
      end
      redis.call('HDEL', hash, field)
      budget = budget - 1
    end
  until cursor == '0' or budget <= 0
  if redis.call('EXISTS', hash) == 0 then
    redis.call('ZREM', heartbeats, process)
  end
  return budget
end
"""

# KEYS: the heartbeat set, this process's hash. ARGV: this process, the age after which
# a process is forgotten, the prefix, the batch. This one's hash expires if its
# heartbeats stop for as long.
_HEARTBEAT = (
    _FORGET
    + """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
local budget = tonumber(ARGV[4])
local cutoff = now - tonumber(ARGV[2])
for _, process in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 100)) do
  if budget <= 0 then break end
  budget = forget(KEYS[1], ARGV[3], process, budget)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""
)

# KEYS: the heartbeat set, this process's hash. ARGV: this process, the prefix, the
# batch. This process stops counting at once; returns 1 while entries are left.
_CLOSE = (
    _FORGET
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
forget(KEYS[1], ARGV[2], ARGV[1], tonumber(ARGV[3]))
return redis.call('EXISTS', KEYS[2])
"""
)

# KEYS: the user's counts in the channel, the heartbeat set, the user's leaving mark,
# this process's hash, the channel's users, the channel's quiet mark, the channel's
# leavers. ARGV: this process, the change ('1': a socket came, '-1': one went, '0': a
# grace period ended), the age after which a heartbeat is stale, the mark's lifetime
# (ms), the caller's mark, this process's field ('<h>:<user id>'), the user, the
# join/leave limit ('' for none), the members at which join/leave resume. A leaving
# mark and its entry in the leavers come and go together. Returns {the user's live
# total, 1 if that is news for the channel, the channel's users (not its leavers: they
# get no delivery), 1 if join/leave are sent, 1 if this change switched them}, or nil
# when a socket went that this process had not counted.
_TRANSITION = f"""
local time = redis.call('TIME')
local now = tonumber(time[1])
local change = ARGV[2]
if change == '-1' and tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') <= 0 then
  return false
end
if change ~= '0' then
  local left = redis.call('HINCRBY', KEYS[1], ARGV[1], change)
  if left <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[4], ARGV[6])
  else
    redis.call('HSET', KEYS[4], ARGV[6], left)
  end
end
local total = 0
local counts = redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  if counts[i] == ARGV[1] then
    total = total + tonumber(counts[i + 1])
  else
    local beat = redis.call('ZSCORE', KEYS[2], counts[i])
    if not beat then
      redis.call('HDEL', KEYS[1], counts[i])
    elseif now - tonumber(beat) <= tonumber(ARGV[3]) then
      total = total + tonumber(counts[i + 1])
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[7])
elseif change == '1' then
  redis.call('SADD', KEYS[5], ARGV[7])
end
local news = 0
if change == '1' then
  if total == 1 then
    if redis.call('DEL', KEYS[3]) == 0 then news = 1 end
    redis.call('ZREM', KEYS[7], ARGV[7])
  end
elseif change == '-1' then
  if total == 0 then
    redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[4])
    local now_ms = now * 1000 + math.floor(tonumber(time[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. now_ms)
    redis.call('ZADD', KEYS[7], now_ms + tonumber(ARGV[4]), ARGV[7])
    local latest = redis.call('ZRANGE', KEYS[7], -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', KEYS[7], latest[2])
    news = 1
  end
else
  local mark = redis.call('GET', KEYS[3])
  if total == 0 and (not mark or mark == ARGV[5]) then news = 1 end
  if mark == ARGV[5] then redis.call('DEL', KEYS[3]) end
  if not mark or mark == ARGV[5] then redis.call('ZREM', KEYS[7], ARGV[7]) end
end
local members = redis.call('SCARD', KEYS[5])
local quiet = redis.call('EXISTS', KEYS[6]) == 1
local switched = 0
if ARGV[8] ~= '' and not quiet and members > tonumber(ARGV[8]) then
  redis.call('SET', KEYS[6], '1', 'EX', {QUIET_SECONDS})
  quiet, switched = true, 1
elseif quiet and (ARGV[8] == '' or members <= tonumber(ARGV[9])) then
  redis.call('DEL', KEYS[6])
  quiet, switched = false, 1
elseif quiet then
  redis.call('EXPIRE', KEYS[6], {QUIET_SECONDS})
end
return {{total, news, members, quiet and 0 or 1, switched}}
"""

# KEYS: the channel's users, the heartbeat set, the channel's leavers. ARGV: the stale
# age, the limit, this process, the prefix of the channel's per-user counts. Returns up
# to limit users with a socket on a live process, then users in their leave grace
# (each user once); entries of forgotten processes met on the way go, and leavers past
# their mark's deadline.
_MEMBERS = """
local time = redis.call('TIME')
local now = tonumber(time[1])
local stale, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local found, seen, live, listed = {}, {}, {}, {}
local cursor = '0'
repeat
  local page = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', 100)
  cursor = page[1]
  for _, user in ipairs(page[2]) do
    if not seen[user] then
      seen[user] = true
      local key = ARGV[4] .. user
      local counts = redis.call('HGETALL', key)
      local here, dropped = false, false
      for i = 1, #counts, 2 do
        local process = counts[i]
        local state = live[process]
        if state == nil then
          if process == ARGV[3] then
            state = 'live'
          else
            local beat = redis.call('ZSCORE', KEYS[2], process)
            if not beat then
              state = 'forgotten'
            elseif now - tonumber(beat) <= stale then
              state = 'live'
            else
              state = 'stale'
            end
          end
          live[process] = state
        end
        if state == 'forgotten' then
          redis.call('HDEL', key, process)
          dropped = true
        elseif state == 'live' and tonumber(counts[i + 1]) > 0 then
          here = true
        end
      end
      if dropped and redis.call('EXISTS', key) == 0 then
        redis.call('SREM', KEYS[1], user)
      end
      if here then
        found[#found + 1] = user
        listed[user] = true
        if #found >= limit then return found end
      end
    end
  end
until cursor == '0'
local now_ms = now * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. now_ms)
local start = 0
repeat
  local page = redis.call('ZRANGE', KEYS[3], start, start + 99)
  for _, user in ipairs(page) do
    if not listed[user] then
      found[#found + 1] = user
      listed[user] = true
      if #found >= limit then return found end
    end
  end
  start = start + 100
until #page < 100
return found
"""


def channel_hash(channel: str) -> str:
    """What stands for a channel in keys: never its name, which a client chose."""
    digest = hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:CHANNEL_HASH_LENGTH]


class RedisChannelPresence:
    """Socket counts per channel and user across every process of the deployment."""

    def __init__(
        self, redis_url: str, channel: str, heartbeat_seconds: int, grace_seconds: float
    ) -> None:
        # A burst of subscriptions waits for a connection rather than fail past
        # redis-py's plain pool with MaxConnectionsError.
        self._redis = pooled_client(redis_url)
        self._fail_fast = FailFast()  # a stalled Redis costs a handshake one timeout
        self._prefix = f"{channel}:channel-presence:"
        self._heartbeat_key = f"{self._prefix}processes"
        self._process = uuid.uuid4().hex
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_after = str(MISSED_HEARTBEATS * heartbeat_seconds)
        self._forgotten_after = str(FORGOTTEN_AFTER_HEARTBEATS * heartbeat_seconds)
        self._leaving_ms = str(int(1000 * (grace_seconds + LEAVING_MARK_SECONDS)))
        self._transition = self._redis.register_script(_TRANSITION)
        self._members = self._redis.register_script(_MEMBERS)
        self._beat = self._redis.register_script(_HEARTBEAT)
        self._forget_self = self._redis.register_script(_CLOSE)
        self._heartbeats: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def _process_key(self) -> str:
        return f"{self._prefix}process:{self._process}"

    def _channel_prefix(self, channel: str) -> str:
        return f"{self._prefix}channel:{channel_hash(channel)}:"

    async def _change_to(
        self, channel: str, user_id: str, change: int, limit: int | None, mark: str = ""
    ) -> ChannelCounted | None:
        at = self._channel_prefix(channel)
        keys = [
            f"{at}user:{user_id}",
            self._heartbeat_key,
            f"{at}leaving:{user_id}",
            self._process_key,
            f"{at}users",
            f"{at}quiet",
            f"{at}leavers",
        ]
        args: list[str | int] = [
            self._process,
            change,
            self._stale_after,
            self._leaving_ms,
            mark,
            f"{channel_hash(channel)}:{user_id}",
            user_id,
            "" if limit is None else limit,
            "" if limit is None else resume_at(limit),
        ]
        with self._fail_fast:
            answer = await self._transition(keys=keys, args=args)
        if answer is None:
            return None
        total, news, members, on, switched = answer
        mode = JoinLeave(int(members), bool(on), bool(switched))
        return ChannelCounted(int(total), bool(news), mode)

    async def subscribed(
        self, channel: str, user_id: str, limit: int | None = None
    ) -> ChannelCounted | None:
        """The user's total in the channel with the new socket; None if Redis failed
        (no announcement) or this store is closed."""
        if self._closed:
            return None
        try:
            if self._heartbeats is None:
                await self._start_heartbeats()
            return await self._change_to(channel, user_id, 1, limit)
        except aioredis.RedisError as error:
            log.warning("channel presence not counted: Redis failed (%s)", type(error).__name__)
            return None

    async def unsubscribed(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None:
        """The user's total in the channel without the socket; at 0 the user is marked
        leaving it with ``mark``. None if this process had no socket of the user in the
        channel (nothing changes), if Redis failed, or once closed."""
        if self._closed:
            return None
        try:
            return await self._change_to(channel, user_id, -1, limit, mark)
        except aioredis.RedisError as error:
            log.warning("channel presence not counted: Redis failed (%s)", type(error).__name__)
            return None

    async def gone(
        self, channel: str, user_id: str, mark: str, limit: int | None = None
    ) -> ChannelCounted | None:
        """At the end of the grace begun with ``mark``: ``news`` if the user is gone from
        the channel (no socket there on any live process, and no comeback since). None
        if Redis failed or once closed."""
        if self._closed:
            return None
        try:
            return await self._change_to(channel, user_id, 0, limit, mark)
        except aioredis.RedisError as error:
            log.warning("channel presence not read: Redis failed (%s)", type(error).__name__)
            return None

    async def join_leave(self, channel: str) -> JoinLeave:
        """The channel's users (``SCARD``: see the module) and whether join and leave are
        sent in it, in one round trip. Raises ``redis.RedisError`` when Redis does not
        answer."""
        at = self._channel_prefix(channel)
        with self._fail_fast:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.scard(f"{at}users")
                pipe.exists(f"{at}quiet")
                members, quiet = await pipe.execute()
        return JoinLeave(int(members), not quiet)

    async def members(self, channel: str, limit: int) -> list[str]:
        """Up to ``limit`` users with a socket in the channel on a live process (in no
        particular order), then users in their leave grace there, each once, in one
        round trip. Raises ``redis.RedisError`` when Redis does not answer."""
        if limit <= 0:
            return []
        at = self._channel_prefix(channel)
        keys = [f"{at}users", self._heartbeat_key, f"{at}leavers"]
        args: list[str | int] = [self._stale_after, limit, self._process, f"{at}user:"]
        with self._fail_fast:
            users = await self._members(keys=keys, args=args)
        return [user.decode() if isinstance(user, bytes) else str(user) for user in users]

    async def _start_heartbeats(self) -> None:
        # The first heartbeat is written before the first count (another process would
        # drop a count without one), once, however many sockets subscribe meanwhile.
        async with self._starting:
            if self._heartbeats is None:
                with self._fail_fast:
                    await self._heartbeat()
                self._heartbeats = asyncio.ensure_future(self._beat_forever())

    async def _heartbeat(self) -> None:
        keys = [self._heartbeat_key, self._process_key]
        args: list[str | int] = [self._process, self._forgotten_after, self._prefix, FORGET_BATCH]
        await self._beat(keys=keys, args=args)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                await self._heartbeat()
            except aioredis.RedisError as error:
                log.warning("channel presence heartbeat failed: %s", type(error).__name__)

    async def close(self) -> None:
        """Stop the heartbeat, drop this process's heartbeat (its counts stop at once)
        and delete its entries."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
            keys = [self._heartbeat_key, self._process_key]
            args: list[str | int] = [self._process, self._prefix, FORGET_BATCH]
            with contextlib.suppress(aioredis.RedisError):
                # A batch per round trip; past CLOSE_ROUNDS, what is left expires (the
                # hash) or goes when its channel is next used.
                for _ in range(CLOSE_ROUNDS):
                    if not await self._forget_self(keys=keys, args=args):
                        break
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()
