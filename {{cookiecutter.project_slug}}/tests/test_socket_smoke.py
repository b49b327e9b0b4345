"""Smoke: a socket connects with a one-time token and receives a direct message."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test(timeout=20)
async def test_connect_and_receive_direct_message(api, sockets):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    ada_socket = await sockets.connect(await api.socket_token(ada))
    bob_socket = await sockets.connect(await api.socket_token(bob))
    sent = await api.request("POST", "/api/v1/db/message", {"text": "hi bob", "to": bob.id}, token=ada.token)
    assert sent.status == 201, sent.body
    [received] = await bob_socket.wait_for("message")
    assert received["text"] == "hi bob"
    assert received["author"] == {"_id": ada.id, "username": "ada"}
    assert received["to"] == bob.id
    await ada_socket.wait_for("message")
    refused = await sockets.refused("x" * 43)
    assert refused.connect_errors == [{"message": "INVALID_TOKEN"}]
