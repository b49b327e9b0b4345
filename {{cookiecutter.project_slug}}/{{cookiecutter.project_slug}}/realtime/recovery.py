"""Replaying what a reconnecting socket missed, with no gap and no duplicate at the switch.

A client that reconnects sends the position of the last message it received
(handshake ``auth``: ``{"token": ..., "position": ...}``). The handshake then:

1. *holds* the socket before it joins its rooms: whatever is emitted to it from
   then on is kept for it, in order, instead of delivered (``RoomManager.hold``);
2. once Socket.IO's CONNECT is on its way, reads the history after the position
   for the socket's rooms, and sends ``recovery`` ``{"complete", "count"}``, then
   the replayed messages in order;
3. delivers what was held meanwhile, skipping messages the replay already
   contained, and only then lets deliveries through again.

A message emitted while this runs is either in the history read (it was kept
before the read) or held (it was delivered after the socket joined its rooms),
or both: never neither, and never delivered twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import socketio

from .history import INCOMPLETE, History, position_of
from .rooms import NAMESPACE, RoomManager

log = logging.getLogger(__name__)

RECOVERY_EVENT = "recovery"
MAX_POSITION_LENGTH = 64


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


class Recovery:
    """Holds recovering sockets and replays their missed messages (one task each)."""

    def __init__(self, sio: socketio.AsyncServer, history: History) -> None:
        self._sio = sio
        self.history = history
        self._replays: set[asyncio.Task[None]] = set()

    @property
    def _manager(self) -> RoomManager:
        return self._sio.manager

    def hold(self, sid: str, rooms: Collection[str]) -> None:
        """Call before the socket joins ``rooms``."""
        self._manager.hold(sid, rooms)

    def cancel(self, sid: str) -> None:
        """The handshake failed after ``hold``."""
        self._manager.release(sid)

    def replay_after_connect(self, sid: str, position: str, rooms: Collection[str]) -> None:
        """Replay in a task of its own, which runs once the handshake has answered."""
        task = asyncio.ensure_future(self._replay(sid, position, rooms))
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    async def _replay(self, sid: str, position: str, rooms: Collection[str]) -> None:
        manager = self._manager
        try:
            try:
                replay = await self.history.since(position, rooms)
            except Exception as error:  # the history's store failed: say so, start live
                log.warning("recovery failed for a socket: %s", type(error).__name__)
                replay = INCOMPLETE
            summary = {"complete": replay.complete, "count": len(replay.entries)}
            await self._send(RECOVERY_EVENT, summary, sid)
            replayed = set()
            for entry in replay.entries:
                await self._send(entry.event, entry.delivered_args(), sid)
                replayed.add(entry.position)
            # No await between finding nothing held and releasing: a message emitted
            # after the release is delivered directly, after everything held.
            while held := manager.take_held(sid):
                for event, data in held:
                    if position_of(data) not in replayed:
                        await self._send(event, data, sid)
        finally:
            manager.release(sid)

    async def _send(self, event: str, data: Any, sid: str) -> None:
        # Straight to this process's socket: past the hold and any message queue.
        await self._manager.deliver(event, data, NAMESPACE, room=sid)

    async def close(self) -> None:
        """Stop the replays under way (the message client closes the history)."""
        for task in list(self._replays):
            task.cancel()
        await asyncio.gather(*self._replays, return_exceptions=True)
