"""The example entity: a message from one user to another, to a channel, or to everyone.

A message with ``to`` is direct: only its author and its addressee see it. A message
with ``channel`` goes to that channel's subscribers, and those who may subscribe see
it (its author must be one of them). A message with neither is a broadcast that every
user sees. Its author changes and deletes it; members of the group ``moderators`` may
delete any message they see.
"""

from __future__ import annotations

from typing import Annotated, Any

from bson import ObjectId
from transom_socketio.auth.tokens import Principal
from transom_socketio.db import IndexSpec
from transom_socketio.models.access import OWNER, group
from transom_socketio.models.base import Entity
from transom_socketio.realtime.channels import CHANNEL_RULE
from transom_socketio.shapes import Ref, Shape, Text

from ..channels import channels


class Message(Entity):
    name = "message"
    owner_field = "author"
    create_only = ("to", "channel")
    hidden = ("updated_at",)
    delete = OWNER | group("moderators")  # its author, or any moderator who sees it

    class Fields(Shape):
        text: Annotated[str, Text(max_length=2000)]
        to: Annotated[ObjectId, Ref("user")] | None = None
        channel: Annotated[str, Text(max_length=133, pattern=CHANNEL_RULE)] | None = None

    def indexes(self) -> list[IndexSpec]:
        """Each way a message is readable (``readable_by``) has an index, newest first: a
        page is read from them, not by filtering every message before it."""
        return [
            *super().indexes(),
            IndexSpec(self.collection, [("to", 1), ("_id", -1)]),
            IndexSpec(self.collection, [("channel", 1), ("_id", -1)]),
        ]

    def readable_by(self, user: Principal) -> dict[str, Any]:
        """Sent by the user, addressed to them, broadcast, or in a channel they may join."""
        me = ObjectId(user.user_id)
        broadcast = {"to": None, "channel": None}
        readable = channels.readable_query(user, field="channel")  # channels.py's rules
        return {"$or": [{"author._id": me}, {"to": me}, broadcast, readable]}


ENTITY = Message()
