"""Rooms indexed by socket, so a disconnect costs the socket's rooms, not every room.

python-socketio's manager finds the rooms of a disconnecting socket by copying and
scanning every room of the namespace. Every socket has rooms of its own (its sid
room, ``user:<id>``, ``jwt:<jti>``), so with 5,000 sockets each disconnect scans
about 15,000 rooms, and a mass disconnect (a deploy, a network blip) costs seconds
of CPU during which no message is delivered. This manager keeps the reverse index
(socket -> its rooms) next to python-socketio's own structures.

``basic_disconnect`` repeats the bookkeeping of python-socketio 5.18's version
(callbacks, pending connects and disconnects) without the scan, and reads the
manager's undocumented ``rooms``: it is used only with the exact library versions
of ``accel.versions.TESTED`` (python-socketio's own scan runs otherwise).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..rooms import RoomManager


class IndexedRooms(RoomManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # namespace -> sid -> the rooms it is in (a short list: 4 or 5 rooms each).
        self._rooms_of: dict[str, dict[str, list[Hashable]]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Hashable, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        rooms = self._rooms_of.setdefault(namespace, {}).setdefault(sid, [])
        if room not in rooms:
            rooms.append(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Hashable) -> None:
        super().basic_leave_room(sid, namespace, room)
        by_sid = self._rooms_of.get(namespace, {})
        rooms = by_sid.get(sid)
        if rooms is not None and room in rooms:
            rooms.remove(room)
            if not rooms:
                del by_sid[sid]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get(namespace, {}).get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def room_size(self, namespace: str, room: Hashable) -> int:
        """How many sockets of this process are in ``room``, without copying the room
        (``get_participants`` copies it first)."""
        members = self.rooms.get(namespace, {}).get(room)
        return 0 if members is None else len(members._fwdm)  # bidict's own __len__ is Python

    def get_rooms(self, sid: str, namespace: str) -> list[Hashable]:
        return [room for room in self._rooms_of.get(namespace, {}).get(sid, ()) if room is not None]
