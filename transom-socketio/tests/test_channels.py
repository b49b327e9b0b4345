import asyncio

import pytest


@pytest.mark.gen_test(timeout=60)
async def test_race(api, sockets, registry):
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    manager = registry["channels"]
    watcher = await sockets.connect(await api.socket_token(ada), events=("join", "leave"))
    assert (await watcher.client.call("subscribe", {"channel": "room:lobby"}))["ok"]
    for i in range(30):
        s = await sockets.connect(await api.socket_token(bob))
        await s.client.emit("subscribe", {"channel": "room:lobby"})
        if i % 3 == 1:
            await asyncio.sleep(0.001 * i)
        await s.client.disconnect()
    await asyncio.sleep(5)
    print(manager._subscribed, manager._members, manager.presence._sockets, watcher.events)
    pres = await api.request("GET", "/api/v1/channels/room:lobby/presence", token=ada.token)
    print(pres.body)
    assert [m["username"] for m in pres.body["presence"]["members"]] == ["ada"]
