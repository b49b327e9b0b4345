"""The example entity: a message from one user to another, or to everyone.

A message with ``to`` is direct: only its author and its addressee see it. A
message without ``to`` is a broadcast that every user sees.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bson import ObjectId

from ..auth.tokens import Principal
from ..db import IndexSpec
from .base import DATE_TIME, OBJECT_ID, Entity, Field, nullable, owner_schema


class Message(Entity):
    name = "message"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("text", max_length=2000),
        Field("to", required=False, reference="user", updatable=False),
    )
    owner_field = "author"

    def indexes(self) -> list[IndexSpec]:
        return [*super().indexes(), IndexSpec(self.collection, [("to", 1), ("_id", -1)])]

    def visible_to(self, user: Principal) -> dict[str, Any]:
        """Sent by the user, addressed to them, or broadcast."""
        me = ObjectId(user.user_id)
        return {"$or": [{"author._id": me}, {"to": me}, {"to": None}]}

    def to_public(self, doc: dict[str, Any]) -> dict[str, Any]:
        author = doc.get("author") or {}
        return {
            "_id": doc["_id"],
            "text": doc["text"],
            "author": {"_id": author.get("_id"), "username": author.get("username")},
            "to": doc.get("to"),
            "created_at": doc["created_at"],
        }

    def public_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["_id", "text", "author", "to", "created_at"],
            "additionalProperties": False,
            "properties": {
                "_id": OBJECT_ID,
                "text": {"type": "string"},
                "author": owner_schema(),
                "to": nullable(OBJECT_ID),
                "created_at": DATE_TIME,
            },
        }


ENTITY = Message()
