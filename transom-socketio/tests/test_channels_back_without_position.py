"""Channels asked back without a position (README, "Channels").

A socket that reconnects with ``auth = {"token", "channels": [...]}`` but no
``position`` (a client that keeps no recovery state) gets back the channels it may
still have, and is told which, as a recovering socket is told in its ``recovery``
event: by a ``subscriptions`` event right after it connects.
"""

from __future__ import annotations

import pytest
from test_channels import accepted

from transom_socketio.testing.clients import Sockets


@pytest.mark.gen_test(timeout=60)
async def test_a_socket_back_without_a_position_is_told_which_channels_it_got(
    api, registry, sockets: Sockets
):
    msg = registry["transomMsgClient"]
    ada = await api.new_user()
    asked = ["room:a", "group:staff", "nowhere:x", "room:a"]
    auth = {"token": await api.socket_token(ada), "channels": asked}
    socket = await sockets.connect(auth=auth, events=("subscriptions", "recovery", "news"))

    told = await socket.wait_for("subscriptions")
    # Not a member of staff; no pattern "nowhere": refused, and said so once each.
    assert told == [{"channels": {"room:a": True, "group:staff": False, "nowhere:x": False}}]
    assert socket.received("recovery") == []
    assert registry["channels"].channels_of(socket.client.get_sid()) == {"room:a"}
    await msg.emitToChannel("group:staff", "news", {"n": "staff only"})
    await msg.emitToChannel("room:a", "news", {"n": 1})
    await socket.wait_for("news")
    assert socket.received("news") == [{"n": 1}]


@pytest.mark.gen_test(timeout=60)
async def test_a_socket_that_asks_for_no_channels_is_told_nothing(api, sockets: Sockets):
    ada = await api.new_user()
    socket = await sockets.connect(
        auth={"token": await api.socket_token(ada)}, events=("subscriptions", "news")
    )
    # A round trip after CONNECT: anything the server sent first has arrived by its ack.
    assert accepted(await socket.client.call("subscribe", {"channel": "room:b"}))
    assert socket.received("subscriptions") == []
