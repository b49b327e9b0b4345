"""Channels across processes (REDIS_URL): two app processes (``python -m example_app``)
share one database and one Redis. A channel emit reaches its subscribers on both and
nobody else; a socket whose transport drops comes back on the other process with its
channels and their missed messages; join and leave reach only the channel's
subscribers, once, whichever process each socket is on; a user who loses a group
loses its channel on every process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from test_channels import ChannelClient, Tab, code_of, eventually, relogin, users_in
from test_scale_out import AppProcess, shared_environment, two_apps

from transom_socketio.testing.clients import Api, Sockets, User

GRACE_SECONDS = 3
EVENTS = ("join", "leave", "recovery")

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def environment(mongodb_uri: str) -> dict[str, str]:
    return {
        **shared_environment(mongodb_uri),
        "PRESENCE_GRACE_SECONDS": str(GRACE_SECONDS),
        "WRITES_PER_MINUTE_PER_USER": "0",
        "BROADCASTS_PER_MINUTE_PER_USER": "0",
        "SIGNUPS_PER_ADDRESS": "0",
    }


@pytest.fixture
def processes(environment: dict[str, str]) -> Iterator[list[AppProcess]]:
    with two_apps(environment) as started:
        yield started


class Cluster:
    """The two processes, as a test talks to them: ``api[0]``, ``sockets[1]``..."""

    def __init__(
        self, processes: list[AppProcess], http_client: Any, environment: dict[str, str]
    ) -> None:
        self.urls = [app.url for app in processes]
        self.api = [Api(http_client, url) for url in self.urls]
        self.sockets = [Sockets(url) for url in self.urls]
        self._mongo: AsyncMongoClient = AsyncMongoClient(environment["MONGODB_URI"])
        self.db = self._mongo[environment["MONGODB_DB"]]

    async def tab(self, side: int, user: User, **auth: Any) -> Tab:
        auth = {"token": await self.api[side].socket_token(user), **auth}
        events = (*EVENTS, "sentinel")
        return Tab(user, await self.sockets[side].connect(auth=auth, events=events))

    async def in_groups(self, user: User, *groups: str) -> User:
        await self.db["users"].update_one(
            {"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}}
        )
        return await relogin(self.api[0], user)

    async def post(self, side: int, author: User, **body: Any) -> dict[str, Any]:
        answer = await self.api[side].request(
            "POST", "/api/v1/db/message", body, token=author.token
        )
        assert answer.status == 201, answer.body
        return answer.body["message"]

    async def members(self, side: int, user: User, channel: str) -> list[str]:
        answer = await self.api[side].request(
            "GET", f"/api/v1/channels/{channel}/presence", token=user.token
        )
        assert answer.status == 200, answer.body
        return sorted(m["username"] for m in answer.body["presence"]["members"])

    async def close(self) -> None:
        for sockets in self.sockets:
            await sockets.close_all()
        await self._mongo.close()


@pytest.fixture
def cluster(processes, http_client, environment, io_loop) -> Iterator[Cluster]:
    made = Cluster(processes, http_client, environment)
    yield made
    io_loop.run_sync(made.close)


async def delivered(cluster: Cluster, sender: User, *tabs: Tab) -> None:
    """Every message posted before has reached each tab: a direct message posted after
    it (through either process, alternately) has."""
    for n, one in enumerate(tabs):
        text = f"sentinel {uuid.uuid4().hex}"
        await cluster.post(n % 2, sender, text=text, to=one.user.id)
        await eventually_received(one, text)


async def eventually_received(one: Tab, text: str, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while text not in [m["text"] for m in one.received("message")]:
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} not received"
        await asyncio.sleep(0.02)


def leaves_in(one: Tab) -> list[str]:
    return users_in(one.received("leave"), "room:x")


def texts(one: Tab) -> list[str]:
    return [m["text"] for m in one.received("message") if not m["text"].startswith("sentinel")]


@pytest.mark.gen_test(timeout=120)
async def test_a_channel_emit_reaches_exactly_its_subscribers_on_both_processes(cluster):
    ada, bob, cyd, dan, eve = [
        await cluster.api[0].new_user(name) for name in ("ada", "bob", "cyd", "dan", "eve")
    ]
    ada_on_a, bob_on_b = await cluster.tab(0, ada), await cluster.tab(1, bob)
    ada_on_b = await cluster.tab(1, ada)  # her other tab, not subscribed
    cyd_on_a, dan_on_b = await cluster.tab(0, cyd), await cluster.tab(1, dan)
    await ada_on_a.joined("room:x")
    await bob_on_b.joined("room:x")
    await cyd_on_a.joined("room:y")
    # dan subscribes to nothing
    assert code_of(await dan_on_b.subscribe("group:staff")) == "forbidden"

    through_a = await cluster.post(0, eve, text="x via A", channel="room:x")
    through_b = await cluster.post(1, eve, text="x via B", channel="room:x")
    other = await cluster.post(1, eve, text="y via B", channel="room:y")
    everyone = (ada_on_a, ada_on_b, bob_on_b, cyd_on_a, dan_on_b)
    await delivered(cluster, eve, *everyone)
    for subscriber in (ada_on_a, bob_on_b):
        assert [m for m in subscriber.received("message") if m["channel"]] == [
            through_a,
            through_b,
        ]
    assert texts(cyd_on_a) == ["y via B"] and cyd_on_a.received("message")[0] == other
    assert texts(ada_on_b) == [] and texts(dan_on_b) == []

    # Bob unsubscribes on B: nothing more reaches him, from either process.
    assert await bob_on_b.unsubscribe("room:x") == {"ok": True}
    await cluster.post(0, eve, text="x after via A", channel="room:x")
    await cluster.post(1, eve, text="x after via B", channel="room:x")
    await delivered(cluster, eve, ada_on_a, bob_on_b)
    assert texts(bob_on_b) == ["x via A", "x via B"]
    assert texts(ada_on_a) == ["x via A", "x via B", "x after via A", "x after via B"]


@pytest.mark.gen_test(timeout=120)
async def test_a_dropped_socket_recovers_its_channels_messages_on_the_other_process(cluster):
    api_a = cluster.api[0]
    ada = await cluster.in_groups(await api_a.new_user("ada"), "staff")
    bob = await api_a.new_user("bob")
    # What a socket that stays connected on A sees, for comparison.
    watcher = await cluster.tab(0, ada, channels=["room:x", "group:staff"])
    asked = ["room:x", "group:staff", "group:admin"]
    client = ChannelClient(api_a, ada, cluster.urls[0], asked)
    client.client.on("message", client._recorder("message"))
    try:
        await client.connect()
        await client.wait_until(lambda: len(client.recoveries()) == 1)

        async def post(side: int, label: str, to_ada: bool = True) -> None:
            if not to_ada:
                await cluster.post(side, bob, text=f"not for ada {label}", channel="room:z")
            elif label.endswith(("0", "3", "6", "9")):
                await cluster.post(side, ada, text=label, channel="group:staff")
            else:
                await cluster.post(side, bob, text=label, channel="room:x")

        for n in range(3):
            await post(n % 2, f"before {n}")
        await client.wait_until(lambda: len(client.payloads("message")) == 3)

        # The transport drops (no Socket.IO nor engine.io goodbye); the reconnection goes
        # to the other process, once the gap is posted through both.
        client.may_connect.clear()
        client.client.connection_url = cluster.urls[1]
        await client.client.eio.ws.close()
        await asyncio.wait_for(client.disconnected.wait(), 20)
        for n in range(20):
            await post(n % 2, f"gap {n}", to_ada=n % 7 != 3)
        client.may_connect.set()
        n = 0
        while len(client.recoveries()) < 2 and n < 500:
            await post(n % 2, f"during {n}")
            n += 1
        for m in range(4):
            await post(m % 2, f"after {m}")

        def seen_live() -> list[str]:
            return [t for t in texts(watcher) if not t.startswith("not for ada")]

        await client.wait_until(lambda: len(client.payloads("message")) >= len(seen_live()))
        await delivered(cluster, bob, watcher)
        expected = seen_live()
        await client.wait_until(lambda: len(client.payloads("message")) >= len(expected) + 1)
        received = [m["text"] for m in client.payloads("message")]
        assert received[: len(expected)] == expected  # once each, in the same order
        assert received[len(expected)].startswith("sentinel")
        assert not [t for t in received if t.startswith("not for ada")]
        assert client.connects == 2
        port_b = cluster.urls[1].rsplit(":", 1)[1].rstrip("/")
        assert f":{port_b}/" in client.client.eio.base_url  # it came back to B
        recovered = client.recoveries()[1]
        assert recovered["complete"] is True and recovered["count"] >= 17
        assert recovered["channels"] == {
            "room:x": True,
            "group:staff": True,
            "group:admin": False,
        }
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=120)
async def test_join_and_leave_reach_only_subscribers_once_across_processes(cluster):
    ada, bob, cyd, eve = [
        await cluster.api[0].new_user(name) for name in ("ada", "bob", "cyd", "eve")
    ]
    ada_on_a = await cluster.tab(0, ada)
    await ada_on_a.joined("room:x")
    cyd_on_b = await cluster.tab(1, cyd)
    await cyd_on_b.joined("room:y")  # connected, in another channel

    bob_on_b = await cluster.tab(1, bob)
    await bob_on_b.joined("room:x")
    await ada_on_a.socket.wait_for("join", within=20)
    for side in (0, 1):
        assert await cluster.members(side, cyd, "room:x") == ["ada", "bob"]

    # Bob moves from B to A within the grace period: no leave, no join.
    bob_on_a = await cluster.tab(0, bob)
    started = asyncio.get_running_loop().time()
    await bob_on_b.client.disconnect()
    await bob_on_a.joined("room:x")
    moved_in = asyncio.get_running_loop().time() - started
    # Eve comes and goes (on B): her leave ends a grace that began after Bob's move.
    eve_on_b = await cluster.tab(1, eve)
    await eve_on_b.joined("room:x")
    await eve_on_b.client.disconnect()
    await eventually(lambda: "eve" in users_in(ada_on_a.received("leave"), "room:x"), 30)
    seen = (users_in(ada_on_a.received("join"), "room:x"), leaves_in(ada_on_a))
    if moved_in < GRACE_SECONDS:
        assert seen == (["bob", "eve"], ["eve"])
    else:  # a move slower than the grace (a very loaded machine) is a leave and a join
        assert seen in ((["bob", "eve"], ["eve"]), (["bob", "bob", "eve"], ["bob", "eve"]))
    for side in (0, 1):
        assert await cluster.members(side, cyd, "room:x") == ["ada", "bob"]

    # Bob's last socket goes: one leave, after the grace period.
    joins, leaves = len(ada_on_a.received("join")), len(leaves_in(ada_on_a))
    gone_at = asyncio.get_running_loop().time()
    await bob_on_a.client.disconnect()
    await eventually(lambda: len(leaves_in(ada_on_a)) == leaves + 1, 30)
    assert asyncio.get_running_loop().time() - gone_at >= GRACE_SECONDS - 0.1
    assert leaves_in(ada_on_a)[-1] == "bob"
    await delivered(cluster, eve, ada_on_a, cyd_on_b)
    assert len(ada_on_a.received("join")) == joins and len(leaves_in(ada_on_a)) == leaves + 1
    # Cyd, outside the channel, heard of none of it.
    assert cyd_on_b.received("join") == [] and cyd_on_b.received("leave") == []
    for side in (0, 1):
        assert await cluster.members(side, cyd, "room:x") == ["ada"]


@pytest.mark.gen_test(timeout=120)
async def test_a_user_who_loses_a_group_loses_its_channel_on_every_process(cluster):
    api_a, api_b = cluster.api
    admin = await cluster.in_groups(await api_a.new_user("root"), "admin")
    ada = await cluster.in_groups(await api_a.new_user("ada"), "staff")
    cyd = await cluster.in_groups(await api_a.new_user("cyd"), "staff")
    ada_on_a = await cluster.tab(0, ada, channels=["group:staff", "room:x"], position="none")
    await ada_on_a.socket.wait_for("recovery", within=20)
    assert ada_on_a.received("recovery")[0]["channels"] == {"group:staff": True, "room:x": True}
    cyd_on_b = await cluster.tab(1, cyd)
    await cyd_on_b.joined("group:staff")
    await cluster.post(1, cyd, text="staff 1", channel="group:staff")
    await eventually_received(ada_on_a, "staff 1")
    position = ada_on_a.socket.positions[-1]

    # The administrator, on B, takes Ada out of staff: her socket on A is disconnected.
    changed = await api_b.request(
        "PUT", f"/api/v1/admin/users/{ada.id}/groups", {"groups": []}, token=admin.token
    )
    assert changed.status == 200, changed.body
    await asyncio.wait_for(ada_on_a.socket.disconnected.wait(), 20)
    await cluster.post(1, cyd, text="staff 2", channel="group:staff")
    await cluster.post(0, cyd, text="room 1", channel="room:x")

    # She logs in again and comes back to A from where she was: the group's channel is
    # refused, its message not replayed; the room's is.
    ada = await relogin(api_a, ada)
    back = await cluster.tab(0, ada, channels=["group:staff", "room:x"], position=position)
    await eventually_received(back, "room 1")
    assert back.received("recovery") == [
        {"complete": True, "count": 1, "channels": {"group:staff": False, "room:x": True}}
    ]
    assert texts(back) == ["room 1"]
    for side in (0, 1):
        elsewhere = await cluster.tab(side, ada)
        assert code_of(await elsewhere.subscribe("group:staff")) == "forbidden"
    refused = await api_b.request(
        "POST", "/api/v1/db/message", {"text": "x", "channel": "group:staff"}, token=ada.token
    )
    assert refused.status == 403
    await cluster.post(1, cyd, text="staff 3", channel="group:staff")
    await delivered(cluster, cyd, back)
    assert texts(back) == ["room 1"]
