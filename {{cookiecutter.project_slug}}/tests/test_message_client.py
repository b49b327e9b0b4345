"""registry['transomMsgClient'] as this app's code reaches it: emit to users, to everyone.

The message client's every rule (user forms, duplicates, both fan-out paths, recovery)
is tested in transom-socketio's own suite; here, that this app's registry holds it and
that its emits reach this app's sockets.
"""

from __future__ import annotations

import asyncio

import pytest
from transom_socketio import registry as keys


@pytest.fixture
def messages(registry):
    return registry[keys.MESSAGE_CLIENT]


@pytest.mark.gen_test(timeout=30)
async def test_both_registry_names_are_the_same_client(registry):
    assert registry[keys.MESSAGE_CLIENT] is registry["transomMessageClient"]
    assert registry["transomMsgClient"].io is registry[keys.SOCKET_SERVER]


@pytest.mark.gen_test(timeout=30)
async def test_emits_reach_the_users_named_and_everyone(api, sockets, messages):
    ada, bob = await api.new_user(), await api.new_user()
    ada_socket = await sockets.connect(await api.socket_token(ada), events=("ping",))
    bob_socket = await sockets.connect(await api.socket_token(bob), events=("ping",))

    assert await messages.emitToUsers(ada.id, "ping", {"to": "ada"}) == 1
    await messages.emitToEveryone("ping", {"to": "all"})
    assert await ada_socket.wait_for("ping", 2) == [{"to": "ada"}, {"to": "all"}]
    await bob_socket.wait_for("ping")
    await asyncio.sleep(0.3)  # a stray delivery would arrive meanwhile
    assert bob_socket.received("ping") == [{"to": "all"}]


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_users_closes_their_sockets(api, sockets, messages):
    ada = await api.new_user()
    socket = await sockets.connect(await api.socket_token(ada))
    await messages.disconnectUsers(ada.id)
    await asyncio.wait_for(socket.disconnected.wait(), 10)
