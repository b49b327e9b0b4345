"""A user in their leave grace is still a member of a presence channel (issue 23): nobody
was told they left, so whoever reads the list in the grace (a new subscriber, a client
refetching it) sees them, and keeps seeing them if they come back within it (no
``join`` is sent then); once their ``leave`` is sent, they are off the list.

Through real sockets and the presence endpoint; the end-to-end test runs again with
REDIS_URL in test_channel_presence_grace_members_redis.py. The stores' own tests are in
test_channel_presence.py (and _redis).
"""

from __future__ import annotations

import asyncio

import pytest
from test_channels import eventually, flush, members, tab, users_in

from transom_socketio.realtime.channel_presence import LocalChannelPresence

GRACE_SECONDS = 3


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": GRACE_SECONDS}])
@pytest.mark.gen_test(timeout=90)
async def test_a_user_back_within_the_grace_is_listed_to_who_came_meanwhile_and_never_left(
    api, sockets, registry
):
    msg, manager = registry["transomMsgClient"], registry["channels"]
    loop = asyncio.get_running_loop()
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    adas = await tab(api, sockets, ada)
    await adas.joined("room:x")

    # Ada's socket drops (a network blip, a deploy): her grace starts once the server
    # has counted her out (no socket of hers in the channel).
    started = loop.time()
    await adas.client.disconnect()

    async def counted_out() -> bool:
        return (await manager.presence.join_leave("room:x")).members == 0

    await eventually(counted_out, within=20)

    # Meanwhile Bob subscribes (Ada is not counted: she has no socket to deliver to)
    # and fetches the list: Ada is on it, as nobody was told she left.
    bobs = await tab(api, sockets, bob)
    ack = await bobs.subscribe("room:x")
    assert ack == {"ok": True, "presence": {"join_leave": True, "members": 1}}
    listed = await members(api, bob, "room:x")
    in_grace = loop.time() - started < GRACE_SECONDS
    if in_grace:
        assert listed == ["ada", "bob"]

    # Ada is back within the grace: no join, no leave, listed once.
    back = await tab(api, sockets, ada)
    await back.joined("room:x")
    back_in_time = loop.time() - started < GRACE_SECONDS
    assert await members(api, bob, "room:x") == ["ada", "bob"]
    # Past the end of her grace, nothing came: Bob's list is right as it is.
    await asyncio.sleep(max(0.0, started + GRACE_SECONDS + 0.5 - loop.time()))
    await flush(msg, bobs)
    if in_grace and back_in_time:
        assert bobs.received("join") == [] and bobs.received("leave") == []
    else:  # slower than the grace (a very loaded machine): a leave and a join
        assert users_in(bobs.received("join"), "room:x") in ([], ["ada"])
    assert await members(api, bob, "room:x") == ["ada", "bob"]

    # She goes for good: one leave once the grace is over, and off the list.
    leaves = len(bobs.received("leave"))
    await back.client.disconnect()
    await bobs.socket.wait_for("leave", leaves + 1, within=20)
    assert users_in(bobs.received("leave")[leaves:], "room:x") == ["ada"]
    assert await members(api, bob, "room:x") == ["bob"]


@pytest.mark.gen_test(timeout=30)
async def test_the_local_store_keeps_no_channel_without_a_mark():
    store = LocalChannelPresence()
    users = [f"{number:024x}" for number in range(4)]
    for number in range(50):
        for user in users:
            await store.subscribed(f"room:{number}", user)
            await store.unsubscribed(f"room:{number}", user, f"m{number}")
    assert len(store._leaving) == 50
    for number in range(50):
        assert sorted(await store.members(f"room:{number}", 10)) == users
        for user in users[:2]:  # back within the grace, and gone again later
            await store.subscribed(f"room:{number}", user)
            await store.unsubscribed(f"room:{number}", user, "late")
            await store.gone(f"room:{number}", user, "late")
        for user in users[2:]:
            await store.gone(f"room:{number}", user, f"m{number}")
    assert store._leaving == {} and store._sockets == {}
