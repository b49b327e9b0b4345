import asyncio

import pytest


@pytest.mark.gen_test(timeout=30)
async def test_smoke(api, sockets, registry):
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    a = await sockets.connect(await api.socket_token(ada), events=("join", "leave"))
    b = await sockets.connect(await api.socket_token(bob), events=("join", "leave"))
    assert await a.client.call("subscribe", {"channel": "room:lobby"}) == {"ok": True}
    assert (await a.client.call("subscribe", {"channel": "nope:x"}))["error"][
        "code"
    ] == "invalid_channel"
    assert (await a.client.call("subscribe", {"channel": "group:admin"}))["error"][
        "code"
    ] == "forbidden"
    assert await b.client.call("subscribe", {"channel": "room:lobby"}) == {"ok": True}
    joins = await a.wait_for("join")
    assert joins[0]["user"]["username"] == "bob"
    sent = await api.request(
        "POST", "/api/v1/db/message", {"text": "hi", "channel": "room:lobby"}, token=ada.token
    )
    assert sent.status == 201, sent.body
    got = await b.wait_for("message")
    assert got[0]["channel"] == "room:lobby"
    pres = await api.request("GET", "/api/v1/channels/room:lobby/presence", token=ada.token)
    assert pres.status == 200, pres.body
    assert {m["username"] for m in pres.body["presence"]["members"]} == {"ada", "bob"}
    lst = await api.request("GET", "/api/v1/db/message", token=bob.token)
    assert lst.body["messages"][0]["channel"] == "room:lobby"
    await b.client.disconnect()
    await asyncio.sleep(4)
    leaves = await a.wait_for("leave")
    assert leaves[0]["user"]["username"] == "bob"
