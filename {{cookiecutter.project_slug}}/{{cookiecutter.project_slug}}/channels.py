"""The channels clients may subscribe to, and who may (realtime/channels.py of the engine).

A client subscribes with ``socket.emit("subscribe", {channel: "room:lobby"}, ack)``;
``emitToChannel("room:lobby", "message", data)`` then reaches it. A name of no pattern
below is refused. Add a pattern with a function that says who may subscribe:

- ``room:<name>``: any signed-in user (with REQUIRE_VERIFIED_EMAIL, only verified
  users get a JWT), with presence: subscribers see who joins and leaves;
- ``group:<group>``: members of that group only (a user's ``groups``).
"""

from __future__ import annotations

from typing import Any

from transom_socketio.auth.tokens import Principal
from transom_socketio.realtime.channels import Channels

channels = Channels()


@channels.pattern("room", presence=True)
def anyone_signed_in(user: Principal, name: str) -> bool:
    return True


@channels.pattern("group")
def members_of_the_group(user: Principal, name: str) -> bool:
    return name in user.groups


def readable_channels(user: Principal) -> dict[str, Any]:
    """The messages of the channels ``user`` may subscribe to, as a query (the rules
    above, for lists of messages)."""
    groups = [f"group:{group}" for group in user.groups]
    return {"$or": [{"channel": {"$regex": "^room:"}}, {"channel": {"$in": groups}}]}
