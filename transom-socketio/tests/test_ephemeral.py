"""Ephemeral emits (``emitToUsers``/``emitToEveryone`` with ``ephemeral=True``): delivered
to the sockets connected now, recorded nowhere, so never replayed by a recovery; a
recorded emit beside each one shows the difference."""

from __future__ import annotations

import asyncio

import pytest
from test_recovery import clients, drop_transports, recovering  # noqa: F401 (fixture)

from transom_socketio.testing.clients import RecoveringClient, Sockets


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize(
    "settings_overrides",
    [{"fast_fanout": True}, {"fast_fanout": False}],
    ids=["fast fan-out", "python-socketio fan-out"],
)
async def test_an_ephemeral_emit_reaches_every_live_socket_without_a_position(
    api, registry, sockets: Sockets
):
    msg = registry["transomMsgClient"]
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    ada_tabs = [
        await sockets.connect(await api.socket_token(ada), events=("tick",)) for _ in range(2)
    ]
    bob_socket = await sockets.connect(await api.socket_token(bob), events=("tick",))

    assert await msg.emitToUsers([ada.id, ada.id], "tick", {"n": "to ada"}, ephemeral=True) == 1
    await msg.emitToEveryone("tick", {"n": "to all"}, ephemeral=True)
    for tab in ada_tabs:
        assert await tab.wait_for("tick", 2) == [{"n": "to ada"}, {"n": "to all"}]
    assert await bob_socket.wait_for("tick") == [{"n": "to all"}]
    assert [tab.positions for tab in (*ada_tabs, bob_socket)] == [[], [], []]

    # A recorded emit carries its position.
    await msg.emitToUsers(bob.id, "tick", {"n": "recorded"})
    await bob_socket.wait_for("tick", 2)
    assert len(bob_socket.positions) == 1
    await asyncio.sleep(0.2)
    assert [len(tab.received("tick")) for tab in ada_tabs] == [2, 2]


@pytest.mark.gen_test(timeout=30)
async def test_an_ephemeral_emit_takes_no_key(registry):
    msg = registry["transomMsgClient"]
    with pytest.raises(ValueError, match="ephemeral"):
        await msg.emitToUsers("0" * 24, "tick", {}, key="message:1", ephemeral=True)
    with pytest.raises(ValueError, match="ephemeral"):
        await msg.emitToEveryone("tick", {}, key="message:1", ephemeral=True)


@pytest.mark.gen_test(timeout=60)
async def test_a_reconnecting_socket_recovers_the_recorded_emits_and_not_the_ephemeral_ones(
    app,
    api,
    base_url,
    registry,
    clients,  # noqa: F811 (the fixture)
):
    msg = registry["transomMsgClient"]
    client: RecoveringClient = await recovering(clients, api, base_url)
    user = client.user.id

    await msg.emitToUsers(user, "tick", {"n": 0})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    position = client.position
    await msg.emitToUsers(user, "tick", {"n": "typing"}, ephemeral=True)
    await client.wait_until(lambda: len(client.payloads()) == 2)
    assert client.position == position, "an ephemeral emit moves no position"

    # Away: what is emitted now is recovered if recorded, lost if ephemeral.
    client.may_connect.clear()
    await drop_transports(app)
    await asyncio.wait_for(client.disconnected.wait(), 10)
    await msg.emitToUsers(user, "tick", {"n": "missed typing"}, ephemeral=True)
    await msg.emitToEveryone("tick", {"n": "missed for all"}, ephemeral=True)
    await msg.emitToUsers(user, "tick", {"n": 1})
    await msg.emitToEveryone("tick", {"n": 2})
    client.may_connect.set()

    await client.wait_until(lambda: len(client.recoveries()) == 2 and len(client.payloads()) >= 4)
    assert client.recoveries()[1] == {"complete": True, "count": 2}
    await msg.emitToUsers(user, "tick", {"n": "live again"}, ephemeral=True)
    await client.wait_until(lambda: len(client.payloads()) == 5)
    await asyncio.sleep(0.2)
    assert client.payloads() == [
        {"n": 0},
        {"n": "typing"},
        {"n": 1},
        {"n": 2},
        {"n": "live again"},
    ]


@pytest.mark.gen_test(timeout=60)
async def test_a_first_recovery_replays_what_was_recorded_since_the_token_not_what_was_not(
    api,
    registry,
    base_url,
    clients,  # noqa: F811 (the fixture)
):
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    client = RecoveringClient(api, user, base_url)
    clients.append(client)
    auth = await client._auth()  # the token, and its position
    await msg.emitToUsers(user.id, "tick", {"n": "ephemeral"}, ephemeral=True)
    await msg.emitToUsers(user.id, "tick", {"n": "recorded"})
    await client.client.connect(base_url, auth=auth, transports=["websocket"], wait_timeout=10)
    await client.wait_until(lambda: len(client.arrivals) == 2)
    await asyncio.sleep(0.2)
    assert client.arrivals == [
        ("recovery", {"complete": True, "count": 1}),
        ("tick", {"n": "recorded"}),
    ]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_enabled": False}])
async def test_with_recovery_off_an_ephemeral_emit_is_delivered_the_same(
    api, registry, sockets: Sockets
):
    msg = registry["transomMsgClient"]
    ada = await api.new_user("ada")
    socket = await sockets.connect(await api.socket_token(ada), events=("tick",))
    await msg.emitToUsers(ada.id, "tick", {"n": 1}, ephemeral=True)
    await msg.emitToEveryone("tick", ({"n": 2}, "second argument"), ephemeral=True)
    assert await socket.wait_for("tick", 2) == [{"n": 1}, {"n": 2}]
    assert socket.positions == []
