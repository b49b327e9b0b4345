"""Room names, and the room manager that can disconnect a whole room.

Every authenticated socket joins three rooms: ``everyone`` (what
``emitToEveryone`` targets), ``user:<id>`` and ``jwt:<jti>`` (so logging out
disconnects the sockets opened with that JWT). Broadcasts never go to
Socket.IO's implicit all-sockets room, because a socket is already in it while
its handshake is still being checked.
"""

from __future__ import annotations

import socketio

EVERYONE = "everyone"
NAMESPACE = "/"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def jwt_room(jti: str) -> str:
    return f"jwt:{jti}"


class RoomManager(socketio.AsyncManager):
    """python-socketio's in-process manager, plus ``disconnect_room``."""

    async def disconnect_room(self, room: str, namespace: str = NAMESPACE) -> None:
        for sid, _eio_sid in list(self.get_participants(namespace, room)):
            await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
