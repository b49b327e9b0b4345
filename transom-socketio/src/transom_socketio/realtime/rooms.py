"""Room names, and the room manager that can disconnect a whole room.

Every authenticated socket joins three rooms: ``everyone`` (what
``emitToEveryone`` targets), ``user:<id>`` and ``jwt:<jti>`` (so logging out
disconnects the sockets opened with that JWT); and ``sockets:<id>``, which only
counts them (``counted_room``). Broadcasts never go to
Socket.IO's implicit all-sockets room, because a socket is already in it while
its handshake is still being checked; for the same reason a socket joins
``everyone`` last in its handshake (realtime/handshake.py).

Disconnecting a room reaches the sockets still in their handshake too (they are in
their rooms before their JWT is checked): python-socketio would pass over them, so
the manager remembers them and ends each one when its handshake ends. That is what
makes logout hold whatever the interleaving (SECURITY.md, "Sockets and sessions").

Everything here uses python-socketio's public manager API only; the fast path
(``realtime/accel/``) subclasses ``RoomManager`` when FAST_FANOUT is on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Hashable
from typing import Any

import socketio

EVERYONE = "everyone"
NAMESPACE = "/"
# An emit of this event disconnects the room's sockets in each process that receives it
# (how disconnect_room crosses Redis); it is never sent to a client.
DISCONNECT_ROOM_EVENT = "\x00disconnect-room"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def jwt_room(jti: str) -> str:
    return f"jwt:{jti}"


def counted_room(user_id: str) -> str:
    """The room that counts a user's sockets on this process for MAX_SOCKETS_PER_USER:
    a socket joins it as soon as it passes the check, nothing is ever sent to it, and
    python-socketio takes it out when its handshake fails or it disconnects."""
    return f"sockets:{user_id}"


def sessions_ended_since(manager: RoomManager, user_id: str, jti: str, since: float) -> bool | None:
    """Whether the JWT ``jti`` of ``user_id`` was logged out, or every session of the
    user ended, at ``since`` (``time.monotonic()``) or later, when the rooms can tell:
    with sockets in one process, each of these ends the JWT's or the user's room here
    after its revocation is written (auth/accounts.py). None when they cannot."""
    if not manager.records_every_room_end:
        return None
    return manager.ended_since((user_room(user_id), jwt_room(jti)), since)


async def disconnect_local_sockets(manager: RoomManager, room: str, namespace: str) -> None:
    """Disconnect the sockets of ``room`` that this process holds, including those whose
    handshake is still running: each of these ends as soon as its handshake does. The
    end is recorded first, with no await before the room is read: a socket entering the
    room later finds it in ``ended_since``, one in it already is disconnected."""
    manager.record_room_end(room)
    for sid, _eio_sid in list(manager.get_participants(namespace, room)):
        if manager.is_connected(sid, namespace):
            await manager.server.disconnect(sid, namespace=namespace, ignore_queue=True)
        else:
            manager.end_when_connected(sid, namespace)


# How long the end of a room (a logout's, an end of a user's sessions) is remembered,
# and how many at most: a handshake asks whether its rooms ended since its token's
# request was authenticated, which is less than a socket token's lifetime ago.
# What a held socket was kept (``RoomManager.hold``): an event, its data, and the rooms
# it was emitted to (None: to every socket).
Held = tuple[str, Any, "set[Any] | None"]
ROOM_ENDS_KEPT_SECONDS = 600.0
ROOM_ENDS_KEPT_AT_MOST = 100_000


class RoomManager(socketio.AsyncManager):
    """python-socketio's manager plus ``room_size``, ``disconnect_room`` and delivery counts.

    ``emit`` is where a message for this process's sockets arrives, from a local
    call or from another process through Redis; ``deliver`` writes it to
    the sockets.
    """

    # Event deliveries to this process's sockets, by path (exported in /metrics).
    delivered_fast = 0
    delivered_normal = 0
    # Whether every end of a room anywhere in the deployment is one this process
    # records: so with sockets in one process only (the Redis manager says no: a
    # message lost while its subscriber reconnects would go unrecorded).
    records_every_room_end = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Sockets whose deliveries wait while their missed messages are replayed
        # (realtime/recovery.py), with what arrived for them meanwhile, in order.
        # sid -> (the rooms whose emits are kept for it, what was kept: each event, its
        # data and the rooms it was emitted to, None for every socket).
        self._held: dict[str, tuple[frozenset[Hashable], list[Held]]] = {}
        # Sockets that a room's disconnect reached during their handshake (logout, JWT
        # expiry). python-socketio's ``disconnect`` passes over a socket that is not
        # connected yet, and the handshake may have read its JWT as live before the
        # revocation: each of these is refused, or disconnected once connected.
        self._ended_in_handshake: set[tuple[str, str]] = set()
        # room -> when it last ended (time.monotonic()), oldest first; every end after
        # ``_room_ends_forgotten_until`` is here.
        self._room_ends: OrderedDict[Hashable, float] = OrderedDict()
        self._room_ends_forgotten_until = time.monotonic()

    def record_room_end(self, room: Hashable) -> None:
        """Remember that ``room`` ended now (its sockets are being disconnected)."""
        now = time.monotonic()
        ends = self._room_ends
        ends.pop(room, None)
        ends[room] = now
        while len(ends) > ROOM_ENDS_KEPT_AT_MOST or next(iter(ends.values())) < (
            now - ROOM_ENDS_KEPT_SECONDS
        ):
            _, when = ends.popitem(last=False)
            self._room_ends_forgotten_until = max(self._room_ends_forgotten_until, when)

    def ended_since(self, rooms: Collection[Hashable], since: float) -> bool | None:
        """Whether one of ``rooms`` ended at ``since`` (``time.monotonic()``) or later;
        None when that is no longer known (an end then may have been forgotten)."""
        if since <= self._room_ends_forgotten_until:
            return None
        ends = self._room_ends
        return any(ends.get(room, since - 1.0) >= since for room in rooms)

    def hold(self, sid: str, rooms: Collection[Hashable]) -> None:
        """Keep what is emitted from now on to ``sid`` or to ``rooms`` (the rooms it is
        joining), instead of delivering it to ``sid``."""
        self._held[sid] = (frozenset([*rooms, sid]), [])

    def basic_leave_room(self, sid: str, namespace: str, room: Hashable) -> None:
        """python-socketio's; a held socket that leaves ``room`` (a channel unsubscribed
        during its replay) gets nothing more of it: neither what is emitted to it from
        now on nor what was kept for it (``take_held``), nor the replay's entries of it
        (``Recovery``). They were kept for the rooms it held at its handshake, and
        reached it after its unsubscribe's ack (found by a review)."""
        super().basic_leave_room(sid, namespace, room)
        held = self._held.get(sid)
        if held is not None and room in held[0]:
            self._held[sid] = (held[0] - {room}, held[1])

    def take_held(self, sid: str) -> list[tuple[str, Any]]:
        """What was kept for ``sid`` since the last call (it stays held)."""
        rooms, kept = self._held.get(sid, ((), []))
        if not kept:
            return []
        self._held[sid] = (frozenset(rooms), [])
        return [
            (event, data)
            for event, data, targets in kept
            if targets is None or not targets.isdisjoint(rooms)
        ]

    def held_rooms(self, sid: str) -> frozenset[Hashable] | None:
        """The rooms kept for held ``sid`` (those of its handshake it is still in, and
        its own); None when it is not held."""
        held = self._held.get(sid)
        return None if held is None else held[0]

    def held_count(self, sid: str) -> int:
        """How many events wait for ``sid`` (kept since the last ``take_held``)."""
        return len(self._held.get(sid, ((), []))[1])

    def release(self, sid: str) -> None:
        """Deliver to ``sid`` again (call once ``take_held`` returned nothing)."""
        self._held.pop(sid, None)

    def end_when_connected(self, sid: str, namespace: str = NAMESPACE) -> None:
        """Disconnect ``sid``, whose handshake is still running, as soon as it connects."""
        self._ended_in_handshake.add((namespace, sid))

    def ended_in_handshake(self, sid: str, namespace: str = NAMESPACE) -> bool:
        """Whether a room's disconnect reached ``sid`` during its handshake."""
        return (namespace, sid) in self._ended_in_handshake

    async def connect(self, sid: str, namespace: str) -> str:
        """python-socketio's; a socket that a room's disconnect reached during its
        handshake is disconnected at once (its client gets CONNECT, then DISCONNECT)."""
        sid = await super().connect(sid, namespace)
        if self.ended_in_handshake(sid, namespace):
            await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
        return sid

    async def disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """python-socketio's, for a socket connected or refused: it is forgotten here."""
        self._ended_in_handshake.discard((namespace, sid))
        await super().disconnect(sid, namespace, **kwargs)

    def room_size(self, namespace: str, room: Hashable) -> int:
        """How many sockets of this process are in ``room``."""
        return sum(1 for _ in self.get_participants(namespace, room))

    async def disconnect_room(self, room: str, namespace: str = NAMESPACE) -> None:
        await disconnect_local_sockets(self, room, namespace)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if event == DISCONNECT_ROOM_EVENT:
            await disconnect_local_sockets(self, room, namespace or NAMESPACE)
            return
        if self._held and callback is None:
            skip_sid = self._keep_for_held(event, data, room, skip_sid)
        if kwargs:
            await self.deliver(event, data, namespace, room, skip_sid, callback, **kwargs)
        else:  # the message client's emits: a plain call costs an emit less
            await self.deliver(event, data, namespace, room, skip_sid, callback)

    def _keep_for_held(self, event: str, data: Any, room: Any, skip_sid: Any) -> list[Any]:
        """Keep the event for each held socket it targets; return the sockets to skip."""
        skip = list(skip_sid) if isinstance(skip_sid, list) else [skip_sid]
        targets = None if room is None else set(room if isinstance(room, list) else [room])
        for sid, (rooms, kept) in self._held.items():
            if sid in skip:
                continue
            if targets is None or not targets.isdisjoint(rooms):
                kept.append((event, data, targets))
                skip.append(sid)
        return skip

    async def deliver(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> None:
        """python-socketio's delivery: a task and a queued packet per socket."""
        self.delivered_normal += sum(1 for _ in self.get_participants(namespace, room))
        await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )
