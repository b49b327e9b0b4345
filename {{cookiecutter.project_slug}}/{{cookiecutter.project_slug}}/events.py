"""The events this app's sockets may send (``transom_socketio.realtime.events``).

Declare one with ``@events.on(name, body=Model, per_socket_per_minute=n)``: its one
argument is checked by ``Model`` (a ``Shape``: unknown fields refused, no coercion),
each socket may send it ``n`` times a minute, and what the handler returns is the
acknowledgement (``{"error": {...}}`` for an invalid body, a socket over its limit or
a failed handler). An event not declared here is dropped.
"""

from __future__ import annotations

from typing import Annotated

from bson import ObjectId
from transom_socketio.realtime.events import ClientEvents, ClientSocket
from transom_socketio.shapes import Ref, Shape

events = ClientEvents()


class Typing(Shape):
    to: Annotated[ObjectId, Ref("user")]
    typing: bool = True


@events.on("typing", body=Typing, per_socket_per_minute=30)
async def typing(socket: ClientSocket, body: Typing) -> dict[str, bool]:
    """Tell the addressee's sockets who is typing to them: live only (``ephemeral``), so
    a reconnecting client never gets an old indicator replayed."""
    user = socket.user
    await socket.services.message_client.emitToUsers(
        body.to,
        "typing",
        {"from": {"_id": user.user_id, "username": user.username}, "typing": body.typing},
        ephemeral=True,
    )
    return {"ok": True}
