"""Replaying what a reconnecting socket missed, with no gap and no duplicate at the switch,
at a bounded cost.

A client that reconnects sends the position of the last message it received
(handshake ``auth``: ``{"token": ..., "position": ...}``). The handshake then:

1. *holds* the socket before it joins its rooms: whatever is emitted to it from
   then on is kept for it, in order, instead of delivered (``RoomManager.hold``);
2. once Socket.IO's CONNECT is on its way, counts the history's entries after the
   position for the socket's rooms, sends ``recovery`` ``{"complete", "count"}``, then
   the replayed messages in order;
3. delivers what was held meanwhile that comes after the replay, and only then
   lets deliveries through again.

The replay covers the history up to the newest message this process has handed
to delivery (``Replay.through``); each later one is decided after the socket
joined its rooms, so it is held. A message is thus in the replay, or held past
it, or both (then sent once): never neither, never twice.

What a replay may cost (SECURITY.md, "Recovery: what a position can and cannot get"):

- it reads the history a chunk at a time (``history.REPLAY_CHUNK`` entries) and
  yields to the event loop between chunks;
- it never has more than RECOVERY_MAX_UNSENT_BYTES handed to the socket and not yet
  taken by its transport (``realtime/outflow.py``): past that it waits, and a socket
  that takes nothing for RECOVERY_STALL_SECONDS is cut off (its transport closed, as a
  network failure would: its client reconnects and resumes from the last position it
  received). So is a socket for which more than HELD_LIMIT live messages wait, or
  whose promised entries were trimmed away meanwhile;
- at most RECOVERY_REPLAYS_PER_USER replays of one user and RECOVERY_REPLAYS_PER_PROCESS
  in all run at once; a recovery waits for its turn at most RECOVERY_STALL_SECONDS, and
  a user gets at most RECOVERIES_PER_MINUTE_PER_USER (with Redis, in the whole
  deployment as well: ``History.recovery_allowed``). A recovery refused for any of
  these connects all the same and is answered ``{"complete": false, "count": 0}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from socketio import packet as sio_packet

from ..config import Settings
from ..ratelimit import RateLimiter
from .history import INCOMPLETE, EntriesLost, History, Replay, id_of
from .outflow import Flow
from .rooms import NAMESPACE, RoomManager

if TYPE_CHECKING:
    from .accel.replay import ReplayWriter
    from .server import SocketServer

log = logging.getLogger(__name__)

RECOVERY_EVENT = "recovery"
MAX_POSITION_LENGTH = 64
# Live messages that may wait for a socket while its replay is under way; past this,
# it is cut off (they are in the history: its client recovers them when it reconnects).
HELD_LIMIT = 10_000
# Packets a replay leaves untaken on long-polling: each poll answers all of them, and
# python-engineio's client refuses an answer of more than 16 packets.
POLLING_PACKETS = 8


def requested_position(auth: Any) -> str | None:
    """The ``position`` of the handshake's ``auth`` payload, if it names one.

    A missing or null ``position`` asks for none (the socket starts live). Anything
    else but a short string counts as unknown (``complete: false``), never as an
    error: the client still connects.
    """
    position = auth.get("position") if isinstance(auth, dict) else None
    if position is None:
        return None
    if isinstance(position, str) and len(position) <= MAX_POSITION_LENGTH:
        return position
    return ""  # present but unusable: answered with complete=false


class CutOff(Exception):
    """The replay cannot go on for this socket: drop its transport."""


class Gone(Exception):
    """The socket's session ended during its replay."""


class ReplayLimits:
    """How many replays run at once, per user and per process, and how many recoveries a
    user may ask for a minute."""

    def __init__(
        self, per_user: int, per_process: int, per_minute: int, wait: float, history: History
    ) -> None:
        self._per_user = per_user
        self._history = history
        self._process = asyncio.Semaphore(per_process)
        self._rate = RateLimiter(per_minute)
        self._wait = wait
        # user id -> (its semaphore, replays holding or waiting for it)
        self._users: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def acquire(self, user_id: str) -> bool:
        """Wait for a turn of this user's and of the process's; False when the user asked
        too often or the turn does not come within the wait."""
        if self._rate.hit(user_id) is not None or not await self._history.recovery_allowed(user_id):
            return False
        semaphore, waiting = self._users.get(user_id) or (asyncio.Semaphore(self._per_user), 0)
        self._users[user_id] = (semaphore, waiting + 1)
        try:
            async with asyncio.timeout(self._wait):
                await semaphore.acquire()
                try:
                    await self._process.acquire()
                except BaseException:
                    semaphore.release()
                    raise
        except BaseException as error:
            self._leave(user_id)
            if isinstance(error, TimeoutError):
                return False
            raise
        return True

    def release(self, user_id: str) -> None:
        self._process.release()
        self._users[user_id][0].release()
        self._leave(user_id)

    def _leave(self, user_id: str) -> None:
        semaphore, waiting = self._users[user_id]
        if waiting > 1:
            self._users[user_id] = (semaphore, waiting - 1)
        else:
            del self._users[user_id]


class Recovery:
    """Holds recovering sockets and replays their missed messages (one task each)."""

    def __init__(self, sio: SocketServer, history: History, settings: Settings) -> None:
        self._sio = sio
        self.history = history
        self._limits = ReplayLimits(
            settings.recovery_replays_per_user,
            settings.recovery_replays_per_process,
            settings.recoveries_per_minute_per_user,
            settings.recovery_stall_seconds,
            history,
        )
        self._max_unsent = settings.recovery_max_unsent_bytes
        self._stall = settings.recovery_stall_seconds
        self._replays: dict[str, asyncio.Task[None]] = {}
        # With the fast path: a chunk of missed messages in one write (accel/replay.py).
        self._writer: ReplayWriter | None = (
            sio.fast.replay_writer(sio) if sio.fast is not None else None
        )

    @property
    def _manager(self) -> RoomManager:
        return self._sio.manager

    @property
    def replaying(self) -> int:
        """Replays under way (or waiting for their turn) in this process."""
        return len(self._replays)

    def hold(self, sid: str, rooms: Collection[str], position: str) -> None:
        """Call before the socket joins ``rooms``; it comes back with ``position``."""
        self.history.known_through(sid, position)
        self._manager.hold(sid, rooms)

    def cancel(self, sid: str) -> None:
        """The handshake failed after ``hold``."""
        self._manager.release(sid)
        self.history.forget(sid)

    def replay_after_connect(
        self,
        sid: str,
        position: str,
        rooms: Collection[str],
        user_id: str,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Replay in a task of its own, which runs once the handshake has answered;
        ``summary``: more for the ``recovery`` event (the channels it got back)."""
        task = asyncio.ensure_future(self._replay(sid, position, rooms, user_id, summary or {}))
        self._replays[sid] = task
        task.add_done_callback(lambda _done: self._replays.pop(sid, None))

    def stop(self, sid: str) -> None:
        """The socket disconnected: its replay, if any, ends."""
        self.history.forget(sid)
        task = self._replays.get(sid)
        if task is not None:
            task.cancel()

    async def _replay(
        self,
        sid: str,
        position: str,
        rooms: Collection[str],
        user_id: str,
        more: dict[str, Any],
    ) -> None:
        manager = self._manager
        watched = self._sio.watch_outflow(sid)
        if watched is None:  # gone already
            manager.release(sid)
            return
        eio_sid, flow = watched
        granted = False
        try:
            granted = await self._limits.acquire(user_id)
            replay = await self._find(position, rooms) if granted else INCOMPLETE
            summary = {"complete": replay.complete, "count": replay.count, **more}
            await self._hand(sid, eio_sid, flow, RECOVERY_EVENT, summary)
            while entries := await self._next(replay):
                await self._hand_entries(sid, eio_sid, flow, entries)
                await asyncio.sleep(0)  # a chunk at a time
            # No await between finding nothing held and releasing: a message emitted
            # after the release is delivered directly, after everything held.
            while held := manager.take_held(sid):
                for event, data in held:
                    if self._is_new(id_of(data), replay):
                        await self._hand(sid, eio_sid, flow, event, data)
        except CutOff as reason:
            log.info("recovery: socket cut off (%s)", reason)
            self._sio.cut_off(sid)
        except Gone:
            pass
        finally:
            manager.release(sid)
            if granted:
                self._limits.release(user_id)
            self._sio.outflow.forget(eio_sid)

    async def _find(self, position: str, rooms: Collection[str]) -> Replay:
        try:
            return await self.history.since(position, rooms)
        except Exception as error:  # the history's store failed: say so, start live
            log.warning("recovery failed for a socket: %s", type(error).__name__)
            return INCOMPLETE

    async def _next(self, replay: Replay) -> list[Any]:
        try:
            return await replay.chunk()
        except EntriesLost:
            raise CutOff("entries it was promised are gone") from None
        except Exception as error:  # the store failed after the count was sent
            raise CutOff(f"the history failed: {type(error).__name__}") from None

    def _is_new(self, entry_id: Any, replay: Replay) -> bool:
        """Whether a held message is neither in the replay nor one the client had: past
        ``replay.through``. Without an id (other events), or after an incomplete
        recovery, everything held is new."""
        if entry_id is None or not replay.complete or replay.through is None:
            return True
        return self.history.is_after(entry_id, replay.through)

    async def _hand_entries(self, sid: str, eio_sid: str, flow: Flow, entries: list[Any]) -> None:
        """Send history entries in order: with the fast path, in as few writes as the
        unsent-bytes bound allows; else one by one through engine.io."""
        rooms = self._manager.held_rooms(sid)
        if rooms is not None:  # not the rooms it has left since its handshake
            entries = [entry for entry in entries if not rooms.isdisjoint(entry.rooms)]
            if not entries:
                return
        writer = self._writer
        args = self.history.delivered_args
        built = [] if writer is None else [writer.frame(entry, args) for entry in entries]
        frames = [frame for frame in built if frame is not None]
        if writer is None or len(frames) < len(entries):  # off, or binary attachments
            await self._hand_each(sid, eio_sid, flow, entries)
            return
        start = size = 0
        for end, frame in enumerate(frames):
            if end > start and size + len(frame) > self._max_unsent:
                await self._write(writer, sid, eio_sid, flow, entries[start:end], frames[start:end])
                start, size = end, 0
            size += len(frame)
        await self._write(writer, sid, eio_sid, flow, entries[start:], frames[start:])

    async def _hand_each(self, sid: str, eio_sid: str, flow: Flow, entries: list[Any]) -> None:
        for entry in entries:
            await self._hand(sid, eio_sid, flow, entry.event, self.history.delivered_args(entry))

    async def _write(
        self,
        writer: ReplayWriter,
        sid: str,
        eio_sid: str,
        flow: Flow,
        entries: list[Any],
        frames: list[bytes],
    ) -> None:
        """Write the entries' frames at once, first waiting for the transport to take
        what it was handed if they would pass the bound; through engine.io when the
        socket's WebSocket cannot be written to directly now."""
        if self._manager.held_count(sid) > HELD_LIMIT:
            raise CutOff(f"over {HELD_LIMIT} live messages wait for it")
        size = sum(len(frame) for frame in frames)
        full = flow.unsent_bytes and flow.unsent_bytes + size > self._max_unsent
        if full and not await flow.drained(self._stall):
            raise CutOff(f"{flow.unsent_bytes} bytes not taken within {self._stall} s")
        stream = await writer.stream(eio_sid)
        if stream is None:
            await self._hand_each(sid, eio_sid, flow, entries)
            return
        flow.handed(size)
        writer.write(stream, frames).add_done_callback(flow.took_one)
        self._manager.delivered_fast += len(frames)

    async def _hand(self, sid: str, eio_sid: str, flow: Flow, event: str, data: Any) -> None:
        """Send one event straight to this process's socket (past the hold and any message
        queue), waiting first if the bytes its transport has not taken would pass
        RECOVERY_MAX_UNSENT_BYTES."""
        if self._manager.held_count(sid) > HELD_LIMIT:
            raise CutOff(f"over {HELD_LIMIT} live messages wait for it")
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        encoded = self._sio.packet_class(
            sio_packet.EVENT, namespace=NAMESPACE, data=[event, *args]
        ).encode()
        try:
            polling = self._sio.transport(sid) == "polling"
        except KeyError:
            raise Gone from None
        for part in encoded if isinstance(encoded, list) else [encoded]:
            full = flow.unsent_bytes and (
                flow.unsent_bytes + len(part) > self._max_unsent
                or (polling and flow.unsent_packets >= POLLING_PACKETS)
            )
            if full and not await flow.drained(self._stall):
                raise CutOff(f"{flow.unsent_bytes} bytes not taken within {self._stall} s")
            flow.handed(len(part))
            await self._sio.eio.send(eio_sid, part)
        self._manager.delivered_normal += 1

    async def close(self) -> None:
        """Stop the replays under way (the message client closes the history)."""
        tasks = list(self._replays.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
