"""Who is online across processes: ``RedisPresence``, the counts shared through Redis.

The handshake calls ``connected`` once a socket is accepted and ``disconnected``
when it goes; both return the user's socket count after the change and whether it is
news for everyone else (realtime/presence_events.py announces it):

- the last socket going marks the user *leaving*, with a mark of the caller's, and a
  grace period starts; ``left`` at its end says whether they are gone (no socket of
  theirs came back, and the mark is still theirs), and clears the mark;
- a first socket is news unless it clears a *leaving* mark: the user came back
  within the grace, and nobody was told they had gone.

``counts`` answers ``registry['transomMsgClient'].presence(users)`` and
``socket_counts(users)``; ``online`` answers ``online_counts()``.

In Redis, each user has a hash ``<channel>:presence:user:<id>`` of socket counts
by process id, each process a hash ``<channel>:presence:process:<id>`` of the same
counts by user (what ``online`` reads: the users of the live processes), and the
sorted set ``<channel>:presence:processes`` holds each
process's last heartbeat (Redis server time). A count is only believed while its
process's heartbeat is younger than ``3 x PRESENCE_HEARTBEAT_SECONDS``; each
process refreshes its own heartbeat every PRESENCE_HEARTBEAT_SECONDS from one
task (started with its first socket). So the sockets of a process that crashed
stop counting at most three heartbeats after its last one (and count again if it
was only cut off from Redis and its heartbeat resumes within 30 heartbeats; after
that its entries are deleted, so dead processes leave nothing behind). Counting and reading
the total happen in one Lua script, so the total seen on each change is exact
even when several processes change the same user at once. The leaving mark is the key
``<channel>:presence:leaving:<id>``, set, read and cleared in the same scripts, so a
user who leaves one process and comes back on another within the grace is not
announced at all. It expires on its own (``LEAVING_MARK_SECONDS`` after the grace), in
case the process that set it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis

from .presence import Counted, OnlineCounts
from .redis_fail_fast import FailFast, pooled_client
from .rooms import user_room

log = logging.getLogger(__name__)


# How many heartbeats a process may miss before its sockets stop counting.
MISSED_HEARTBEATS = 3

# How many heartbeats after its last one a process is forgotten: its heartbeat leaves
# the set, and its counts are deleted when next read. Until then a process cut off from
# Redis for a while counts again when its heartbeat resumes.
FORGOTTEN_AFTER_HEARTBEATS = 30

# KEYS: the heartbeat set, then one hash per user. ARGV: the stale age, and a process
# not to count ('' for none). Returns each user's live total, in the order of KEYS:
# one round trip for any number of users.
_COUNT_MANY = """
local now = redis.call('TIME')[1]
local totals = {}
for k = 2, #KEYS do
  local total = 0
  local counts = redis.call('HGETALL', KEYS[k])
  for i = 1, #counts, 2 do
    local beat = redis.call('ZSCORE', KEYS[1], counts[i])
    if counts[i] ~= ARGV[2] and beat and now - tonumber(beat) <= tonumber(ARGV[1]) then
      total = total + tonumber(counts[i + 1])
    end
  end
  totals[k - 1] = total
end
return totals
"""

# KEYS: the heartbeat set, this process's hash of users. ARGV: this process, the age
# after which a process is forgotten, the prefix of process hashes. A forgotten
# process's hash goes with it; this one's expires if its heartbeats stop for as long.
_HEARTBEAT = """
local now = redis.call('TIME')[1]
redis.call('ZADD', KEYS[1], now, ARGV[1])
local cutoff = now - tonumber(ARGV[2])
for _, process in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
  redis.call('DEL', ARGV[3] .. process)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""

# KEYS: the heartbeat set. ARGV: the stale age, the prefix of process hashes. Returns
# {users with a socket on a live process, those sockets}: a user on several processes
# counts once.
_ONLINE = """
local now = tonumber(redis.call('TIME')[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
local users, sockets, seen = 0, 0, {}
for _, process in ipairs(live) do
  local counts = redis.call('HGETALL', ARGV[2] .. process)
  for i = 1, #counts, 2 do
    local n = tonumber(counts[i + 1])
    if n > 0 then
      sockets = sockets + n
      if #live == 1 then
        users = users + 1
      elseif not seen[counts[i]] then
        seen[counts[i]] = true
        users = users + 1
      end
    end
  end
end
return {users, sockets}
"""

# How long a leaving mark outlives the grace period, at most: it covers the wait for the
# announcement budget (a minute at most) and a stalled process.
LEAVING_MARK_SECONDS = 90

# KEYS: the user's hash, the heartbeat set, the user's leaving mark, this process's hash
# of users. ARGV: this process, the change ('1': a socket came, '-1': one went, '0': a
# grace period ended), the age after which a heartbeat is stale, the mark's lifetime
# (ms), the caller's mark, the user. Returns {the user's live total, 1 if that is news
# for everyone else}.
_TRANSITION = """
local now = redis.call('TIME')[1]
local change = ARGV[2]
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
  local beat = redis.call('ZSCORE', KEYS[2], counts[i])
  if not beat then
    redis.call('HDEL', KEYS[1], counts[i])
  elseif now - tonumber(beat) <= tonumber(ARGV[3]) then
    total = total + tonumber(counts[i + 1])
  end
end
local news = 0
if change == '1' then
  if total == 1 and redis.call('DEL', KEYS[3]) == 0 then news = 1 end
elseif change == '-1' then
  if total == 0 then
    redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[4])
    news = 1
  end
else
  local mark = redis.call('GET', KEYS[3])
  if total == 0 and (not mark or mark == ARGV[5]) then news = 1 end
  if mark == ARGV[5] then redis.call('DEL', KEYS[3]) end
end
return {total, news}
"""


class RedisPresence:
    """Socket counts per user across every process of the deployment."""

    def __init__(self, redis_url: str, channel: str, heartbeat_seconds: int) -> None:
        self._redis = pooled_client(redis_url)
        self._fail_fast = FailFast()  # a stalled Redis costs a handshake one timeout
        self._prefix = f"{channel}:presence"
        self._process = uuid.uuid4().hex
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_after = str(MISSED_HEARTBEATS * heartbeat_seconds)
        self._forgotten_after = str(FORGOTTEN_AFTER_HEARTBEATS * heartbeat_seconds)
        self._transition = self._redis.register_script(_TRANSITION)
        self._leaving_ms = str(1000 * LEAVING_MARK_SECONDS)
        self._beat = self._redis.register_script(_HEARTBEAT)
        self._count_many = self._redis.register_script(_COUNT_MANY)
        self._online = self._redis.register_script(_ONLINE)
        self._heartbeats: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}:{user_room(user_id)}"

    @property
    def _process_prefix(self) -> str:
        return f"{self._prefix}:process:"

    async def _change_to(self, user_id: str, change: int, mark: str = "") -> Counted:
        keys = [
            self._user_key(user_id),
            f"{self._prefix}:processes",
            self._leaving_key(user_id),
            self._process_prefix + self._process,
        ]
        args: list[str | int] = [
            self._process,
            change,
            self._stale_after,
            self._leaving_ms,
            mark,
            user_id,
        ]
        with self._fail_fast:
            total, news = await self._transition(keys=keys, args=args)
        return Counted(int(total), bool(news))

    def _leaving_key(self, user_id: str) -> str:
        return f"{self._prefix}:leaving:{user_id}"

    async def connected(self, user_id: str) -> Counted | None:
        """The user's total with the new socket; None if Redis failed (no announcement)."""
        try:
            if self._heartbeats is None:
                await self._start_heartbeats()
            return await self._change_to(user_id, 1)
        except aioredis.RedisError as error:
            log.warning("presence not counted: Redis failed (%s)", type(error).__name__)
            return None

    async def disconnected(self, user_id: str, mark: str) -> Counted | None:
        """The user's total without the socket; at 0 the user is marked leaving with
        ``mark``. None if Redis failed."""
        try:
            return await self._change_to(user_id, -1, mark)
        except aioredis.RedisError as error:
            log.warning("presence not counted: Redis failed (%s)", type(error).__name__)
            return None

    async def left(self, user_id: str, mark: str) -> bool:
        """At the end of the grace begun with ``mark``: whether the user is gone (no
        socket on any process, and no comeback since). False if Redis failed."""
        try:
            return (await self._change_to(user_id, 0, mark)).news
        except aioredis.RedisError as error:
            log.warning("presence not read: Redis failed (%s)", type(error).__name__)
            return False

    async def counts(self, user_ids: list[str], *, skip: str = "") -> dict[str, int]:
        """Each user's live total (without process ``skip``), in one round trip. Raises
        ``redis.RedisError`` when Redis does not answer."""
        if not user_ids:
            return {}
        keys = [f"{self._prefix}:processes", *(self._user_key(uid) for uid in user_ids)]
        with self._fail_fast:
            totals = await self._count_many(keys=keys, args=[self._stale_after, skip])
        return {user_id: int(total) for user_id, total in zip(user_ids, totals, strict=True)}

    async def online(self) -> OnlineCounts:
        """Users with a socket on a live process, and those sockets, in one round trip.
        Raises ``redis.RedisError`` when Redis does not answer."""
        keys = [f"{self._prefix}:processes"]
        with self._fail_fast:
            users, sockets = await self._online(
                keys=keys, args=[self._stale_after, self._process_prefix]
            )
        return OnlineCounts(int(users), int(sockets))

    async def sockets_elsewhere(self, user_id: str) -> int | None:
        """The user's sockets on the other processes; None if Redis did not answer."""
        try:
            return (await self.counts([user_id], skip=self._process))[user_id]
        except aioredis.RedisError as error:
            log.warning("presence not read: Redis failed (%s)", type(error).__name__)
            return None

    async def _start_heartbeats(self) -> None:
        # The first heartbeat is written before the first count (a count without a
        # heartbeat would be dropped), once, however many sockets connect meanwhile.
        async with self._starting:
            if self._heartbeats is None:
                with self._fail_fast:
                    await self._heartbeat()
                self._heartbeats = asyncio.ensure_future(self._beat_forever())

    async def _heartbeat(self) -> None:
        keys = [f"{self._prefix}:processes", self._process_prefix + self._process]
        args = [self._process, self._forgotten_after, self._process_prefix]
        await self._beat(keys=keys, args=args)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                await self._heartbeat()
            except aioredis.RedisError as error:
                log.warning("presence heartbeat failed: %s", type(error).__name__)

    async def close(self) -> None:
        """Stop the heartbeat and drop this process's heartbeat: its counts stop at once."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
            with contextlib.suppress(aioredis.RedisError):
                await self._redis.zrem(f"{self._prefix}:processes", self._process)
                await self._redis.delete(self._process_prefix + self._process)
        await self._redis.aclose()
