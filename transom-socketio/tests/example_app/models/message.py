"""The example entity: a message from one user to another, or to everyone.

A message with ``to`` is direct: only its author and its addressee see it. A
message without ``to`` is a broadcast that every user sees. Its author changes and
deletes it; members of the group ``moderators`` may delete any message they see.
"""

from __future__ import annotations

from typing import Annotated, Any

from bson import ObjectId

from transom_socketio.auth.tokens import Principal
from transom_socketio.db import IndexSpec
from transom_socketio.models.access import OWNER, group
from transom_socketio.models.base import Entity
from transom_socketio.shapes import Ref, Shape, Text


class Message(Entity):
    name = "message"
    owner_field = "author"
    create_only = ("to",)
    hidden = ("updated_at",)
    delete = OWNER | group("moderators")  # its author, or any moderator who sees it

    class Fields(Shape):
        text: Annotated[str, Text(max_length=2000)]
        to: Annotated[ObjectId, Ref("user")] | None = None

    def indexes(self) -> list[IndexSpec]:
        return [*super().indexes(), IndexSpec(self.collection, [("to", 1), ("_id", -1)])]

    def visible_to(self, user: Principal) -> dict[str, Any]:
        """Sent by the user, addressed to them, or broadcast."""
        me = ObjectId(user.user_id)
        return {"$or": [{"author._id": me}, {"to": me}, {"to": None}]}


ENTITY = Message()
