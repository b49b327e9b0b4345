"""The channels clients may subscribe to, and who may (realtime/channels.py of the engine).

A client subscribes with ``socket.emit("subscribe", {channel: "room:lobby"}, ack)``;
``emitToChannel("room:lobby", "message", data)`` then reaches it. A name of no pattern
below is refused. Each pattern states its rule once, as data: the engine checks it on
every subscription, and turns it into the query ``channels.readable_query(user)`` that
lists the messages a user may read (models/message.py):

- ``room:<name>``: ``SIGNED_IN``, any signed-in user (with REQUIRE_VERIFIED_EMAIL, only
  verified users get a JWT), with presence: subscribers see who joins and leaves (up
  to 100 members: past ``join_leave_limit``, they are told it stopped);
- ``group:<group>``: ``GROUP_MEMBERS``, members of that group only (a user's ``groups``).

The other rules: ``USER_ITSELF`` (the name is the user's id) and ``members_of("staff")``
(any name, for the members of one group). A rule of your own is a function, with its
query if its channels' messages are to be listed (see the README, "Channels").
"""

from __future__ import annotations

from transom_socketio.realtime.channels import GROUP_MEMBERS, SIGNED_IN, Channels

channels = Channels()
channels.declare("room", SIGNED_IN, presence=True)
channels.declare("group", GROUP_MEMBERS)
