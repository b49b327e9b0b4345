"""The events this app's sockets may send (events.py): ``typing`` reaches the addressee."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_typing_reaches_the_addressee_live_and_is_acknowledged(api, sockets):
    ada, bob = await api.new_user(), await api.new_user()
    ada_socket = await sockets.connect(await api.socket_token(ada))
    bob_socket = await sockets.connect(await api.socket_token(bob), events=("typing",))

    ack = await ada_socket.client.call("typing", {"to": bob.id}, timeout=10)
    assert ack == {"ok": True}
    [shown] = await bob_socket.wait_for("typing")
    assert shown == {"from": {"_id": ada.id, "username": ada.username}, "typing": True}


@pytest.mark.gen_test
async def test_typing_to_nobody_is_refused_in_the_acknowledgement(api, sockets):
    ada = await api.new_user()
    socket = await sockets.connect(await api.socket_token(ada))
    ack = await socket.client.call("typing", {"typing": True}, timeout=10)
    assert ack["error"]["code"] == "validation_error"
    assert ack["error"]["field"] == "to"
