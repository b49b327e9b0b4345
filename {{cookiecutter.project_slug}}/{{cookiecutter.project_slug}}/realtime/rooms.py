"""Room names, and the room manager that can disconnect a whole room.

Every authenticated socket joins three rooms: ``everyone`` (what
``emitToEveryone`` targets), ``user:<id>`` and ``jwt:<jti>`` (so logging out
disconnects the sockets opened with that JWT). Broadcasts never go to
Socket.IO's implicit all-sockets room, because a socket is already in it while
its handshake is still being checked.
"""

from __future__ import annotations

import socketio

from .fanout import FanoutManager

EVERYONE = "everyone"
NAMESPACE = "/"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def jwt_room(jti: str) -> str:
    return f"jwt:{jti}"


async def disconnect_local_sockets(
    manager: socketio.AsyncManager, room: str, namespace: str
) -> None:
    """Disconnect the sockets of ``room`` that this process holds."""
    for sid, _eio_sid in list(manager.get_participants(namespace, room)):
        await manager.server.disconnect(sid, namespace=namespace, ignore_queue=True)


class RoomManager(FanoutManager):
    """The in-process manager: python-socketio's, with fast fan-out and ``disconnect_room``."""

    async def disconnect_room(self, room: str, namespace: str = NAMESPACE) -> None:
        await disconnect_local_sockets(self, room, namespace)
