"""Channels (README, "Channels"; realtime/channels.py): subscribe and unsubscribe with
their acknowledgements, ``emitToChannel`` reaching exactly the subscribed sockets,
join and leave in presence channels with their grace period, the presence endpoint,
subscriptions restored on reconnection with the channels' missed messages, and what
a client may not do (malformed names, channels it may not join, floods).

Every test here runs again with REDIS_URL in test_channels_redis.py, and across two
processes in test_channels_scale_out.py.

What a socket must NOT receive is checked with a sentinel: an event emitted to the
socket's user after the one it must not get; the sentinel's arrival proves that the
earlier emit was delivered to whoever it was going to reach (one process delivers to
a socket in the order it emits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import example_app.app
import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from transom_socketio.realtime.channels import Channels
from transom_socketio.testing.clients import Api, RecoveringClient, SocketClient, Sockets, User

# The limits the example app's channels keep per socket (Channels' defaults).
MAX_PER_SOCKET = 20
BURST = 30  # per_socket_per_minute=60 in bursts of half that
EVENTS = ("news", "other", "join", "leave", "sentinel", "recovery", "subscriptions")


# Helpers ---------------------------------------------------------------------------


async def eventually(condition: Callable[[], Any], within: float = 30.0) -> None:
    """Wait until ``condition()`` (sync or async) is true."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within}s: {condition}")
        await asyncio.sleep(0.02)


async def in_groups(api: Api, db: Any, user: User, *groups: str) -> User:
    """``user`` put in ``groups`` (in the database), with the JWT of a new login."""
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}})
    logged_in = await api.login(user.username)
    assert logged_in.status == 200, logged_in.body
    return dataclasses.replace(user, token=logged_in.body["token"])


def accepted(ack: Any) -> bool:
    """A subscription's acknowledgement is ``{"ok": true}``, and in a presence channel
    ``"presence": {"join_leave", "members"}`` too."""
    if not isinstance(ack, dict) or ack.get("ok") is not True:
        return False
    if set(ack) == {"ok"}:
        return True
    return set(ack) == {"ok", "presence"} and set(ack["presence"]) == {"join_leave", "members"}


async def out_of_every_group(api: Api, admin: User, user: User) -> None:
    """The administrator takes ``user`` out of every group (their sessions end)."""
    removed = await api.request(
        "PUT", f"/api/v1/admin/users/{user.id}/groups", {"groups": []}, token=admin.token
    )
    assert removed.status == 200, removed.body


async def relogin(api: Api, user: User) -> User:
    logged_in = await api.login(user.username)
    assert logged_in.status == 200, logged_in.body
    return dataclasses.replace(user, token=logged_in.body["token"])


@dataclasses.dataclass
class Tab:
    """One socket of a user."""

    user: User
    socket: SocketClient

    @property
    def client(self) -> Any:
        return self.socket.client

    def received(self, event: str) -> list[Any]:
        return self.socket.received(event)

    async def call(self, event: str, *args: Any) -> Any:
        data = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return await self.client.call(event, data, timeout=30)

    async def subscribe(self, channel: Any) -> dict[str, Any]:
        return await self.call("subscribe", {"channel": channel})

    async def unsubscribe(self, channel: Any) -> dict[str, Any]:
        return await self.call("unsubscribe", {"channel": channel})

    async def joined(self, *channels: str) -> None:
        for channel in channels:
            assert accepted(await self.subscribe(channel)), channel


async def tab(
    api: Api, sockets: Sockets, user: User, *, channels: Any = None, position: Any = None
) -> Tab:
    auth: dict[str, Any] = {"token": await api.socket_token(user)}
    if channels is not None:
        auth["channels"] = channels
    if position is not None:
        auth["position"] = position
    return Tab(user, await sockets.connect(auth=auth, events=EVENTS))


async def flush(msg: Any, *tabs: Tab) -> None:
    """Everything emitted before this call has reached each tab (a sentinel emitted to
    its user after it has)."""
    marks = {}
    for one in tabs:
        mark = uuid.uuid4().hex
        marks[id(one)] = mark
        await msg.emitToUsers(one.user.id, "sentinel", {"mark": mark})
    for one in tabs:
        mark = marks[id(one)]
        await eventually(lambda one=one, mark=mark: {"mark": mark} in one.received("sentinel"))


def code_of(ack: Any) -> str:
    """The code of a refusal, checking the acknowledgement's shape on the way."""
    assert isinstance(ack, dict) and set(ack) == {"ok", "error"}, ack
    assert ack["ok"] is False, ack
    assert set(ack["error"]) == {"code", "message"}, ack
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"], ack
    return ack["error"]["code"]


def users_in(event_payloads: list[Any], channel: str) -> list[str]:
    return [p["user"]["username"] for p in event_payloads if p["channel"] == channel]


async def post(api: Api, user: User, **body: Any) -> Any:
    return await api.request("POST", "/api/v1/db/message", body, token=user.token)


async def presence(api: Api, user: User | None, channel: str) -> Any:
    return await api.request(
        "GET", f"/api/v1/channels/{channel}/presence", token=user.token if user else None
    )


async def members(api: Api, user: User, channel: str) -> list[str]:
    answer = await presence(api, user, channel)
    assert answer.status == 200, answer.body
    assert answer.body["presence"]["channel"] == channel
    found = answer.body["presence"]["members"]
    for member in found:
        assert set(member) == {"_id", "username", "display_name"}, member
    return sorted(member["username"] for member in found)


async def drop_transports(app: Any) -> None:
    """Close every socket at the transport, as a network cut would."""
    await app.settings["services"].socket_server.close_transports()


class ChannelClient(RecoveringClient):
    """The README's recovering client that also asks its channels back on every
    (re)connection (``auth["channels"]``)."""

    def __init__(self, api: Api, user: User, url: str, channels: list[Any]) -> None:
        super().__init__(api, user, url, events=("tick", "other", "sentinel"))
        self.channels = channels

    async def _auth(self) -> dict[str, Any]:
        auth = await super()._auth()
        if auth:
            auth["channels"] = self.channels
        return auth

    def ticks(self) -> list[int]:
        return [payload["n"] for payload in self.payloads("tick")]


@pytest.fixture
def channel_clients(io_loop: Any) -> Iterator[list[ChannelClient]]:
    opened: list[ChannelClient] = []
    yield opened

    async def close_all() -> None:
        for client in opened:
            await client.close()

    io_loop.run_sync(close_all)


# Subscribing -----------------------------------------------------------------------


MALFORMED_NAMES = [
    "",
    "room",
    "room:",
    ":lobby",
    "Room:lobby",
    "room:a b",
    "room:a/b",
    "room:a:b",
    "room:lobby\n",
    " room:lobby",
    "room:*",
    "room:$gt",
    "room:{x}",
    "room:caf\u00e9",
    "room:\u0000",
    "room:" + "x" * 101,
    "x" * 33 + ":a",
    "r" * 10_000,
    "nope:lobby",  # well formed, but of no declared pattern
]
MALFORMED_BODIES = [
    {"channel": 1},
    {"channel": None},
    {"channel": ["room:lobby"]},
    {"channel": {"$gt": ""}},
    {},
    {"channel": "room:lobby", "extra": 1},
    "room:lobby",
    ["room:lobby"],
    7,
]


@pytest.mark.gen_test(timeout=90)
async def test_subscribing_to_allowed_channels_is_acknowledged(api, sockets, db):
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    one = await tab(api, sockets, ada)
    # A presence channel's acknowledgement says whether join and leave are sent in it.
    lobby = {"ok": True, "presence": {"join_leave": True, "members": 1}}
    assert await one.subscribe("room:lobby") == lobby
    # Every character a name may hold, at the longest.
    assert accepted(await one.subscribe("room:Az09_.~-"))
    assert accepted(await one.subscribe("room:" + "n" * 100))
    assert await one.subscribe("group:staff") == {"ok": True}
    # Subscribing again is no error, and changes nothing.
    assert await one.subscribe("room:lobby") == lobby
    assert await one.unsubscribe("room:lobby") == {"ok": True}
    # Unsubscribing from a channel the socket does not hold is no error either.
    assert await one.unsubscribe("room:lobby") == {"ok": True}
    assert await one.unsubscribe("room:never") == {"ok": True}


@pytest.mark.gen_test(timeout=90)
async def test_a_channel_the_user_may_not_join_is_forbidden(api, sockets, db, registry):
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    bob = await api.new_user("bob")
    bobs = await tab(api, sockets, bob)
    for channel in ("group:staff", "group:admin", "group:Staff"):
        assert code_of(await bobs.subscribe(channel)) == "forbidden", channel
    # Refused means not subscribed: a message to the channel does not reach Bob.
    adas = await tab(api, sockets, ada)
    await adas.joined("group:staff")
    await registry["transomMsgClient"].emitToChannel("group:staff", "news", {"n": 1})
    await flush(registry["transomMsgClient"], adas, bobs)
    assert adas.received("news") == [{"n": 1}]
    assert bobs.received("news") == []
    assert bobs.client.connected  # a refusal is an answer, not a disconnection


@pytest.mark.gen_test(timeout=90)
async def test_malformed_channel_names_and_bodies_are_refused_as_invalid(api, sockets):
    ada = await api.new_user("ada")
    per_socket = BURST - 5  # each attempt counts against the socket's rate limit
    attempts: list[tuple[str, Any]] = [
        ("subscribe", {"channel": name}) for name in MALFORMED_NAMES
    ] + [(event, body) for body in MALFORMED_BODIES for event in ("subscribe", "unsubscribe")]
    for start in range(0, len(attempts), per_socket):
        one = await tab(api, sockets, ada)
        for event, body in attempts[start : start + per_socket]:
            assert code_of(await one.call(event, body)) == "invalid_channel", (event, body)
        # No argument, or two.
        assert code_of(await one.call("subscribe")) == "invalid_channel"
        two = ({"channel": "room:lobby"}, {"channel": "room:lobby"})
        assert code_of(await one.call("subscribe", *two)) == "invalid_channel"
        assert one.client.connected
        assert accepted(await one.subscribe("room:lobby"))  # the socket still works


@pytest.mark.gen_test(timeout=90)
async def test_refusals_are_logged_without_secrets(api, sockets, caplog, debug_logging):
    ada = await api.new_user("ada")
    token = await api.socket_token(ada)
    caplog.set_level(logging.DEBUG)
    one = Tab(ada, await sockets.connect(token, events=EVENTS))
    assert code_of(await one.subscribe("group:admin")) == "forbidden"
    assert code_of(await one.subscribe("nope:x")) == "invalid_channel"
    assert code_of(await one.subscribe({"$where": "1"})) == "invalid_channel"
    refusals = [r for r in caplog.records if "group:admin" in r.getMessage()]
    assert refusals, "a forbidden subscription is logged"
    assert all(r.levelno <= logging.INFO for r in refusals)  # a client's doing, not an error
    assert any(ada.id in r.getMessage() for r in refusals), "it names the user"
    logged = "\n".join(
        f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in caplog.records
    )
    assert token not in logged
    assert ada.token not in logged


@pytest.mark.gen_test(timeout=90)
async def test_a_flood_of_subscriptions_is_rate_limited_per_socket(api, sockets, registry):
    ada = await api.new_user("ada")
    flooding, other = await tab(api, sockets, ada), await tab(api, sockets, ada)
    # Sent at once, as a flooding client would, each with its acknowledgement.
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = []
    for n in range(2 * BURST + 10):
        answer = loop.create_future()
        answers.append(answer)
        await flooding.client.emit(
            ("subscribe", "unsubscribe")[n % 2],
            {"channel": "room:flood"},
            callback=lambda ack=None, answer=answer: answer.set_result(ack),
        )
    acks = await asyncio.wait_for(asyncio.gather(*answers), 30)
    elapsed = loop.time() - started
    assert all(accepted(ack) for ack in acks[:BURST])  # the burst
    limited = [ack for ack in acks if not accepted(ack)]
    assert limited and {code_of(ack) for ack in limited} == {"rate_limited"}
    assert "retry" in limited[0]["error"]["message"]
    # One token a second comes back (a slow machine gets a few more through).
    assert len(acks) - len(limited) <= BURST + int(elapsed) + 1
    # The limit is the socket's: another socket of the same user subscribes, and the
    # flooding one stays connected.
    assert accepted(await other.subscribe("room:flood"))
    assert flooding.client.connected
    await registry["transomMsgClient"].emitToChannel("room:flood", "news", {"n": 1})
    await other.socket.wait_for("news", within=20)


@pytest.mark.gen_test(timeout=90)
async def test_a_socket_holds_a_bounded_number_of_channels(api, sockets, registry):
    ada = await api.new_user("ada")
    one = await tab(api, sockets, ada)
    for n in range(MAX_PER_SOCKET):
        assert accepted(await one.subscribe(f"room:r{n}"))
    assert code_of(await one.subscribe("room:one-too-many")) == "too_many_subscriptions"
    assert accepted(await one.subscribe("room:r0"))  # one it holds: still fine
    # A refused subscription is not held: the channel's messages do not reach it.
    msg = registry["transomMsgClient"]
    await msg.emitToChannel("room:one-too-many", "news", {"n": "refused"})
    await msg.emitToChannel("room:r19", "news", {"n": "held"})
    await flush(msg, one)
    assert one.received("news") == [{"n": "held"}]
    # Another socket of the user has a bound of its own; a place freed is taken again.
    assert accepted(await (await tab(api, sockets, ada)).subscribe("room:one-too-many"))
    assert await one.unsubscribe("room:r5") == {"ok": True}
    assert accepted(await one.subscribe("room:one-too-many"))


# Delivery --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_a_channel_emit_reaches_exactly_its_subscribers(api, sockets, registry):
    msg = registry["transomMsgClient"]
    ada, bob, cyd, dan = [await api.new_user(name) for name in ("ada", "bob", "cyd", "dan")]
    ada_in, ada_out = await tab(api, sockets, ada), await tab(api, sockets, ada)
    bobs, cyds, dans = [await tab(api, sockets, user) for user in (bob, cyd, dan)]
    await ada_in.joined("room:a")
    await bobs.joined("room:a", "room:a")  # twice: one delivery all the same
    await cyds.joined("room:b")
    await ada_out.joined("room:b")
    # dan subscribes to nothing

    await msg.emitToChannel("room:a", "news", {"n": 1, "at": ObjectId("0" * 24)})
    await msg.emit_to_channel("room:b", "other", {"n": 2})
    everyone = (ada_in, ada_out, bobs, cyds, dans)
    await flush(msg, *everyone)
    expected = {"n": 1, "at": "0" * 24}
    assert ada_in.received("news") == [expected] and bobs.received("news") == [expected]
    for one in (ada_out, cyds, dans):
        assert one.received("news") == []
    assert ada_out.received("other") == [{"n": 2}] and cyds.received("other") == [{"n": 2}]
    for one in (ada_in, bobs, dans):
        assert one.received("other") == []
    # Each emit carries the trailing position, like the message client's other emits.
    for one in everyone:
        emitted = sum(len(one.received(event)) for event in ("news", "other", "sentinel"))
        assert len(set(one.socket.positions)) == emitted


@pytest.mark.gen_test(timeout=90)
async def test_unsubscribing_stops_the_delivery(api, sockets, registry):
    msg = registry["transomMsgClient"]
    ada = await api.new_user("ada")
    one = await tab(api, sockets, ada)
    await one.joined("room:a")
    await msg.emitToChannel("room:a", "news", {"n": 1})
    await one.socket.wait_for("news", within=20)
    assert await one.unsubscribe("room:a") == {"ok": True}
    await msg.emitToChannel("room:a", "news", {"n": 2})
    await flush(msg, one)
    assert one.received("news") == [{"n": 1}]
    await one.joined("room:a")
    await msg.emitToChannel("room:a", "news", {"n": 3})
    await one.socket.wait_for("news", 2, within=20)
    assert one.received("news") == [{"n": 1}, {"n": 3}]


@pytest.mark.gen_test(timeout=60)
async def test_emit_to_channel_refuses_a_bad_name_with_a_value_error(api, registry):
    msg = registry["transomMsgClient"]
    for channel in [*MALFORMED_NAMES, None, 5, b"room:lobby", ["room:lobby"]]:
        with pytest.raises(ValueError, match=r"."):
            await msg.emitToChannel(channel, "news", {})
    for event in ("", None, 5):
        with pytest.raises((TypeError, ValueError)):
            await msg.emitToChannel("room:lobby", event, {})
    await msg.emitToChannel("room:lobby", "news", {})  # a good one, to nobody: fine


@pytest.mark.gen_test(timeout=90)
async def test_a_message_to_a_channel_goes_to_its_subscribers_and_is_listed_to_those_who_may_join(
    api, sockets, db, registry
):
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    bob = await api.new_user("bob")
    adas, bobs = await tab(api, sockets, ada), await tab(api, sockets, bob)
    await adas.joined("room:lobby", "group:staff")
    await bobs.joined("room:lobby")

    in_room = await post(api, bob, text="hello room", channel="room:lobby")
    assert in_room.status == 201, in_room.body
    assert in_room.body["message"]["channel"] == "room:lobby"
    in_group = await post(api, ada, text="staff only", channel="group:staff")
    assert in_group.status == 201, in_group.body
    await adas.socket.wait_for("message", 2, within=20)
    assert adas.received("message") == [in_room.body["message"], in_group.body["message"]]
    await flush(registry["transomMsgClient"], bobs)
    assert bobs.received("message") == [in_room.body["message"]]

    def texts(answer: Any) -> list[str]:
        assert answer.status == 200, answer.body
        return [message["text"] for message in answer.body["messages"]]

    as_ada = await api.request("GET", "/api/v1/db/message", token=ada.token)
    as_bob = await api.request("GET", "/api/v1/db/message", token=bob.token)
    assert texts(as_ada) == ["staff only", "hello room"]
    assert texts(as_bob) == ["hello room"]
    group_message = f"/api/v1/db/message/{in_group.body['message']['_id']}"
    assert (await api.request("GET", group_message, token=bob.token)).status == 404


@pytest.mark.gen_test(timeout=90)
async def test_a_message_to_a_channel_its_author_may_not_join_or_to_a_user_too_is_refused(
    api, sockets, db, registry
):
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    staff = await in_groups(api, db, await api.new_user("cyd"), "staff")
    watcher = await tab(api, sockets, staff)
    await watcher.joined("group:staff")
    for channel in ("group:staff", "group:admin", "nope:x"):
        refused = await post(api, ada, text="let me in", channel=channel)
        assert refused.status == 403, (channel, refused.body)
        assert refused.error_code == "forbidden"
    both = await post(api, ada, text="both", to=bob.id, channel="room:lobby")
    assert both.status == 400 and both.error_code == "validation_error", both.body
    for channel in ("room:*", "room:a b", "room:" + "x" * 101, "$where", {"$gt": ""}, 7):
        refused = await post(api, ada, text="bad name", channel=channel)
        assert refused.status == 400, (channel, refused.body)
    # Nothing was stored, nothing sent.
    assert await db["messages"].count_documents({}) == 0
    await flush(registry["transomMsgClient"], watcher)
    assert watcher.received("message") == []


@pytest.mark.gen_test(timeout=90)
async def test_an_author_who_left_the_channels_group_can_no_longer_edit_into_it(
    api, sockets, db, registry
):
    # An edit reaches the channel too (its readers, and every replay from then on): it is
    # checked against the channel's rule as a new message is.
    admin = await in_groups(api, db, await api.new_user("root"), "admin")
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    bob = await in_groups(api, db, await api.new_user("bob"), "staff")
    posted = await post(api, ada, text="hello staff", channel="group:staff")
    assert posted.status == 201, posted.body
    path = f"/api/v1/db/message/{posted.body['message']['_id']}"
    edited = await api.request("PUT", path, {"text": "hello\r\nagain"}, token=ada.token)
    assert edited.status == 200, edited.body
    assert edited.body["message"]["text"] == "hello\nagain"  # one kind of line ending

    await out_of_every_group(api, admin, ada)
    ada = await relogin(api, ada)
    refused = await api.request("PUT", path, {"text": "send me your passwords"}, token=ada.token)
    assert (refused.status, refused.error_code) == (403, "forbidden"), refused.body
    seen = await api.request("GET", path, token=bob.token)
    assert seen.body["message"]["text"] == "hello\nagain"


# Presence --------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 1}])
@pytest.mark.gen_test(timeout=90)
async def test_join_and_leave_reach_only_the_channels_subscribers(api, sockets, registry):
    ada, bob, cyd = [await api.new_user(name) for name in ("ada", "bob", "cyd")]
    adas = await tab(api, sockets, ada)
    await adas.joined("room:a")
    cyds = await tab(api, sockets, cyd)
    await cyds.joined("room:b")  # another channel; and connected, like everyone

    bob_first = await tab(api, sockets, bob)
    await bob_first.joined("room:a")
    await adas.socket.wait_for("join", within=20)
    assert users_in(adas.received("join"), "room:a") == ["bob"]
    assert adas.received("join")[0] == {
        "channel": "room:a",
        "user": {"_id": bob.id, "username": "bob", "display_name": "bob"},
    }
    # Bob's second socket in the channel is no news; his first leaving is none either.
    bob_second = await tab(api, sockets, bob)
    await bob_second.joined("room:a")
    assert await bob_first.unsubscribe("room:a") == {"ok": True}

    # His last socket goes: one leave, once the grace period is over.
    gone_at = asyncio.get_running_loop().time()
    await bob_second.client.disconnect()
    await adas.socket.wait_for("leave", within=20)
    assert asyncio.get_running_loop().time() - gone_at >= 0.9
    assert adas.received("leave") == [adas.received("join")[0]]
    await flush(registry["transomMsgClient"], adas, cyds, bob_first)
    assert len(adas.received("join")) == 1 and len(adas.received("leave")) == 1
    # Nobody outside the channel heard of it, nor did Bob of himself.
    for one in (cyds, bob_first):
        assert one.received("join") == [] and one.received("leave") == []


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 3}])
@pytest.mark.gen_test(timeout=90)
async def test_a_user_back_within_the_grace_period_is_neither_left_nor_joined(api, sockets):
    ada, bob, cyd = [await api.new_user(name) for name in ("ada", "bob", "cyd")]
    adas = await tab(api, sockets, ada)
    await adas.joined("room:a")
    bobs, bobs_next = await tab(api, sockets, bob), await tab(api, sockets, bob)
    await bobs.joined("room:a")
    await adas.socket.wait_for("join", within=20)

    # A page reload: Bob's socket leaves the channel, another comes back at once.
    started = asyncio.get_running_loop().time()
    await bobs.client.disconnect()
    await bobs_next.joined("room:a")
    moved_in = asyncio.get_running_loop().time() - started
    # Then Cyd comes and goes: her leave ends a grace that began after Bob's.
    cyds = await tab(api, sockets, cyd)
    await cyds.joined("room:a")
    await cyds.client.disconnect()
    await eventually(lambda: "cyd" in users_in(adas.received("leave"), "room:a"), within=20)
    seen = (users_in(adas.received("join"), "room:a"), users_in(adas.received("leave"), "room:a"))
    if moved_in < 3:
        assert seen == (["bob", "cyd"], ["cyd"])
    else:  # a move slower than the grace (a very loaded machine) is a leave and a join
        assert seen in ((["bob", "cyd"], ["cyd"]), (["bob", "bob", "cyd"], ["bob", "cyd"]))


@pytest.mark.gen_test(timeout=90)
async def test_the_presence_endpoint_lists_subscribed_members_to_those_who_may_join(
    api, sockets, db
):
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    bob, cyd = await api.new_user("bob"), await api.new_user("cyd")
    adas, bobs = await tab(api, sockets, ada), await tab(api, sockets, bob)
    await tab(api, sockets, cyd)  # connected, not subscribed: not a member
    await adas.joined("room:lobby", "group:staff")
    await bobs.joined("room:lobby")
    # Anyone who may join sees the members, subscribed or not.
    for user in (ada, bob, cyd):
        assert await members(api, user, "room:lobby") == ["ada", "bob"]
    assert await members(api, cyd, "room:empty") == []
    # Bob unsubscribes: listed through his grace (PRESENCE_GRACE_SECONDS, 3: he may be
    # back, and nobody was told he left), off the list once his leave is announced.
    left_at = asyncio.get_running_loop().time()
    assert await bobs.unsubscribe("room:lobby") == {"ok": True}
    listed = await members(api, cyd, "room:lobby")
    if asyncio.get_running_loop().time() - left_at < 3:  # (not on a very loaded machine)
        assert listed == ["ada", "bob"]
    await adas.socket.wait_for("leave", within=20)
    assert await members(api, cyd, "room:lobby") == ["ada"]

    # A channel the caller may not join: 403 whether it keeps presence or not; a
    # member of a channel without presence: 404.
    forbidden = await presence(api, bob, "group:staff")
    assert (forbidden.status, forbidden.error_code) == (403, "forbidden")
    assert "ada" not in json.dumps(forbidden.body)
    none = await presence(api, ada, "group:staff")
    assert (none.status, none.error_code) == (404, "not_found")
    for bad in ("nope:x", "room:a%20b", "room:a%2Fb", "room", "room%3A", "room:" + "x" * 101):
        answer = await presence(api, ada, bad)
        assert (answer.status, answer.error_code) == (400, "invalid_channel"), (bad, answer.body)
    assert (await presence(api, None, "room:lobby")).status == 401
    # The name may come percent-encoded.
    encoded = await presence(api, cyd, "room%3Alobby")
    assert [m["username"] for m in encoded.body["presence"]["members"]] == ["ada"]


def restricted_channels() -> Channels:
    """The example app's channels, and ``club:<name>``: presence, for members of the
    group ``club-<name>`` only."""
    channels = Channels()
    channels.pattern("room", presence=True)(lambda user, name: True)
    channels.pattern("group")(lambda user, name: name in user.groups)
    channels.pattern("club", presence=True)(lambda user, name: f"club-{name}" in user.groups)
    return channels


class TestAPresenceChannelForSomeUsers:
    """Presence never shows a user to someone who may not subscribe: neither the
    endpoint nor the join and leave events."""

    @pytest.fixture
    def make_app(self, make_app, monkeypatch):
        monkeypatch.setattr(example_app.app, "channels", restricted_channels())
        return make_app

    @pytest.fixture
    def settings_overrides(self):
        return {"presence_grace_seconds": 1}

    @pytest.mark.gen_test(timeout=90)
    async def test_outsiders_see_no_member_and_no_join_or_leave(self, api, sockets, db, registry):
        ada = await in_groups(api, db, await api.new_user("ada"), "club-chess")
        bob = await in_groups(api, db, await api.new_user("bob"), "club-chess")
        cyd = await in_groups(api, db, await api.new_user("cyd"), "club-go")
        adas, cyds = await tab(api, sockets, ada), await tab(api, sockets, cyd)
        await adas.joined("club:chess", "room:lobby")
        await cyds.joined("club:go", "room:lobby")
        assert code_of(await cyds.subscribe("club:chess")) == "forbidden"

        bobs = await tab(api, sockets, bob)
        await bobs.joined("club:chess")
        await bobs.client.disconnect()
        await adas.socket.wait_for("leave", within=20)
        assert users_in(adas.received("join"), "club:chess") == ["bob"]
        assert users_in(adas.received("leave"), "club:chess") == ["bob"]
        # Cyd was in the same process, the same room, and saw none of it.
        await flush(registry["transomMsgClient"], cyds)
        assert users_in(cyds.received("join"), "club:chess") == []
        assert users_in(cyds.received("leave"), "club:chess") == []
        assert users_in(cyds.received("join") + cyds.received("leave"), "room:lobby") == []

        forbidden = await presence(api, cyd, "club:chess")
        assert (forbidden.status, forbidden.error_code) == (403, "forbidden")
        assert "ada" not in json.dumps(forbidden.body)
        assert await members(api, ada, "club:chess") == ["ada"]
        assert await members(api, cyd, "club:go") == ["cyd"]

    @pytest.mark.gen_test(timeout=90)
    async def test_a_member_who_loses_the_group_is_disconnected_and_announced_gone(
        self, api, sockets, db
    ):
        admin = await in_groups(api, db, await api.new_user("root"), "admin")
        ada = await in_groups(api, db, await api.new_user("ada"), "club-chess")
        bob = await in_groups(api, db, await api.new_user("bob"), "club-chess")
        adas, bobs = await tab(api, sockets, ada), await tab(api, sockets, bob)
        await adas.joined("club:chess")
        await bobs.joined("club:chess")
        await adas.socket.wait_for("join", within=20)

        await out_of_every_group(api, admin, bob)
        await asyncio.wait_for(bobs.socket.disconnected.wait(), 20)
        await adas.socket.wait_for("leave", within=20)
        assert users_in(adas.received("leave"), "club:chess") == ["bob"]
        assert await members(api, ada, "club:chess") == ["ada"]
        # Back with a new login: the channel is refused, however it is asked for.
        bob = await relogin(api, bob)
        back = await tab(api, sockets, bob, channels=["club:chess", "room:lobby"])
        assert code_of(await back.subscribe("club:chess")) == "forbidden"
        forbidden = await presence(api, bob, "club:chess")
        assert (forbidden.status, forbidden.error_code) == (403, "forbidden")
        assert await members(api, ada, "club:chess") == ["ada"]
        assert await members(api, ada, "room:lobby") == ["bob"]


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 1}])
@pytest.mark.parametrize("how", ["disconnects", "unsubscribes"])
@pytest.mark.gen_test(timeout=90)
async def test_a_socket_that_goes_while_subscribing_is_not_left_a_member(
    app, api, sockets, registry, monkeypatch, how
):
    """A subscription still being made (the member's fields read from a slow database)
    when its socket disconnects or unsubscribes: the socket is counted in, then out
    (join, then leave), never left a member with nothing to count it out."""
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    adas = await tab(api, sockets, ada)
    await adas.joined("room:lobby")
    users = app.settings["services"].users
    real_get = users.get
    reading = asyncio.Event()

    async def slow_get(user_id: Any) -> Any:
        reading.set()
        await asyncio.sleep(0.5)
        return await real_get(user_id)

    monkeypatch.setattr(users, "get", slow_get)
    bobs = await tab(api, sockets, bob)
    sid = bobs.client.get_sid()
    await bobs.client.emit("subscribe", {"channel": "room:lobby"})
    await asyncio.wait_for(reading.wait(), 20)  # the subscription is under way
    if how == "disconnects":
        await bobs.client.disconnect()
    else:
        assert await bobs.unsubscribe("room:lobby") == {"ok": True}

    await adas.socket.wait_for("leave", within=20)
    assert users_in(adas.received("join"), "room:lobby") == ["bob"]
    assert users_in(adas.received("leave"), "room:lobby") == ["bob"]
    assert await members(api, ada, "room:lobby") == ["ada"]
    assert registry["channels"].channels_of(sid) == frozenset()


def fail_the_next_count(app: Any, registry: Any, monkeypatch: Any, failing: str) -> None:
    """The next subscription to a presence channel cannot be counted: the read of the
    member's fields fails (the database), or the presence store does (as the Redis
    store answers when Redis fails)."""
    if failing == "database":
        users = app.settings["services"].users
        real_get, failed = users.get, []

        async def get(user_id: Any) -> Any:
            if not failed:
                failed.append(user_id)
                raise AutoReconnect("connection refused")
            return await real_get(user_id)

        monkeypatch.setattr(users, "get", get)
    else:
        store = registry["channels"].presence
        real_subscribed, refused = store.subscribed, []

        async def subscribed(*args: Any, **kwargs: Any) -> Any:
            if not refused:
                refused.append(args)
                return None
            return await real_subscribed(*args, **kwargs)

        monkeypatch.setattr(store, "subscribed", subscribed)


UNCOUNTED = {"ok": True, "presence": {"join_leave": False, "members": None}}


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 1}])
@pytest.mark.parametrize("failing", ["database", "presence store"])
@pytest.mark.parametrize("how", ["disconnects", "unsubscribes"])
@pytest.mark.gen_test(timeout=90)
async def test_a_socket_whose_count_failed_takes_nothing_from_its_users_other_sockets(
    app, api, sockets, registry, monkeypatch, failing, how
):
    """Ada's second socket subscribes when its count cannot be made: it is subscribed,
    uncounted, and its acknowledgement says so. When it goes, Ada, still there with her
    first socket, is neither announced gone nor dropped from the members; her first
    socket's going is her one leave."""
    ada, cyd = await api.new_user("ada"), await api.new_user("cyd")
    cyds = await tab(api, sockets, cyd)
    await cyds.joined("room:lobby")
    first, second = await tab(api, sockets, ada), await tab(api, sockets, ada)
    await first.joined("room:lobby")
    await cyds.socket.wait_for("join", within=20)

    fail_the_next_count(app, registry, monkeypatch, failing)
    assert await second.subscribe("room:lobby") == UNCOUNTED
    await registry["transomMsgClient"].emitToChannel("room:lobby", "news", {"n": 1})
    await second.socket.wait_for("news", within=20)  # subscribed all the same
    if how == "disconnects":
        await second.client.disconnect()
    else:
        assert await second.unsubscribe("room:lobby") == {"ok": True}

    await asyncio.sleep(2.5)  # twice the grace: a wrong leave would be out by now
    assert await members(api, cyd, "room:lobby") == ["ada", "cyd"]
    assert users_in(cyds.received("leave"), "room:lobby") == []
    await first.client.disconnect()
    await cyds.socket.wait_for("leave", within=20)
    assert users_in(cyds.received("leave"), "room:lobby") == ["ada"]
    assert await members(api, cyd, "room:lobby") == ["cyd"]


@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 1}])
@pytest.mark.parametrize("failing", ["database", "presence store"])
@pytest.mark.gen_test(timeout=90)
async def test_subscribing_again_counts_a_socket_whose_count_failed(
    app, api, sockets, registry, monkeypatch, failing
):
    ada, cyd = await api.new_user("ada"), await api.new_user("cyd")
    cyds = await tab(api, sockets, cyd)
    await cyds.joined("room:lobby")
    adas = await tab(api, sockets, ada)
    fail_the_next_count(app, registry, monkeypatch, failing)
    assert await adas.subscribe("room:lobby") == UNCOUNTED
    assert await members(api, cyd, "room:lobby") == ["cyd"]

    again = await adas.subscribe("room:lobby")
    assert again == {"ok": True, "presence": {"join_leave": True, "members": 2}}
    await cyds.socket.wait_for("join", within=20)
    assert users_in(cyds.received("join"), "room:lobby") == ["ada"]
    assert await members(api, cyd, "room:lobby") == ["ada", "cyd"]
    await adas.client.disconnect()
    await cyds.socket.wait_for("leave", within=20)
    assert await members(api, cyd, "room:lobby") == ["cyd"]


# Restored subscriptions and recovery -----------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_channels_asked_for_at_connection_are_restored_without_a_position(
    api, sockets, db, registry
):
    msg = registry["transomMsgClient"]
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    asked = ["room:a", "group:staff", "group:admin", "nope:x", "room:a", 42, None, "x" * 500]
    one = await tab(api, sockets, ada, channels=asked)
    await msg.emitToChannel("room:a", "news", {"n": 1})
    await msg.emitToChannel("group:staff", "news", {"n": 2})
    await msg.emitToChannel("group:admin", "news", {"n": 3})
    await msg.emitToChannel("room:b", "news", {"n": 4})
    await flush(msg, one)
    assert one.received("news") == [{"n": 1}, {"n": 2}]
    assert one.received("recovery") == []  # no position, no recovery
    assert registry["channels"].channels_of(one.client.get_sid()) == {"room:a", "group:staff"}
    # A restored channel counts as a subscription: unsubscribing ends it.
    assert await one.unsubscribe("room:a") == {"ok": True}
    await msg.emitToChannel("room:a", "news", {"n": 5})
    await flush(msg, one)
    assert one.received("news") == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("position", [None, "not-a-position"])
@pytest.mark.gen_test(timeout=90)
async def test_a_channel_asked_back_that_is_no_channel_name_is_left_out_of_the_answer(
    api, sockets, registry, position, caplog
):
    """Such a name was echoed back as refused, and one holding a lone surrogate
    (``"\\ud800"`` in the JSON) cannot be encoded: the ``subscriptions`` event was lost
    with an ERROR and a traceback, and the ``recovery`` event's socket closed (found by
    a review)."""
    ada = await api.new_user("ada")
    asked = ["room:a", "room:\ud800", "ROOM:a", "room:a b", "room:é"]
    one = await tab(api, sockets, ada, channels=asked, position=position)
    told = "subscriptions" if position is None else "recovery"
    await one.socket.wait_for(told, within=20)
    assert one.received(told)[0]["channels"] == {"room:a": True}
    assert registry["channels"].channels_of(one.client.get_sid()) == {"room:a"}
    assert accepted(await one.subscribe("room:b"))  # the socket lives on
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.gen_test(timeout=90)
async def test_a_channel_left_during_the_replay_of_its_socket_sends_nothing_more(
    app, api, sockets, registry, monkeypatch
):
    """A socket back with a position and its channels is held while its missed messages
    are replayed: what is emitted to its rooms meanwhile is kept, and sent after the
    replay. A channel it unsubscribed from during the replay still had its emits kept
    and sent, after the unsubscribe's ack (found by a review)."""
    msg = registry["transomMsgClient"]
    ada = await api.new_user("ada")
    first = await tab(api, sockets, ada, channels=["room:a", "room:b"])
    await msg.emitToChannel("room:a", "news", {"n": "before"})
    await first.socket.wait_for("news")
    position = first.socket.positions[-1]
    await first.client.disconnect()

    history = app.settings["services"].socket_server.history
    replaying, release = asyncio.Event(), asyncio.Event()
    since = history.since

    async def held_since(*args: Any) -> Any:
        replaying.set()
        await release.wait()
        return await since(*args)

    monkeypatch.setattr(history, "since", held_since)
    back = await tab(api, sockets, ada, channels=["room:a", "room:b"], position=position)
    await asyncio.wait_for(replaying.wait(), 20)
    assert await back.unsubscribe("room:a") == {"ok": True}
    await msg.emitToChannel("room:a", "news", {"n": "after leaving"})
    await msg.emitToChannel("room:b", "news", {"n": "still here"})
    release.set()
    await back.socket.wait_for("recovery", within=20)
    await flush(msg, back)
    assert back.received("news") == [{"n": "still here"}]


@pytest.mark.parametrize(
    "channels", [{"room:a": True}, "room:a", 7, [["room:a"]], [{"$gt": ""}]], ids=repr
)
@pytest.mark.gen_test(timeout=90)
async def test_channels_of_the_wrong_shape_restore_nothing_and_connect(
    api, sockets, registry, channels
):
    msg = registry["transomMsgClient"]
    ada = await api.new_user("ada")
    one = await tab(api, sockets, ada, channels=channels, position="not-a-position")
    await one.socket.wait_for("recovery", within=20)
    summary = one.received("recovery")[0]
    assert summary["complete"] is False and summary["count"] == 0
    assert summary.get("channels", {}) == {}
    await msg.emitToChannel("room:a", "news", {"n": 1})
    await flush(msg, one)
    assert one.received("news") == []


@pytest.mark.gen_test(timeout=90)
async def test_at_most_max_per_socket_channels_are_restored(api, sockets, registry):
    ada = await api.new_user("ada")
    asked = [f"room:r{n}" for n in range(MAX_PER_SOCKET + 10)]
    one = await tab(api, sockets, ada, channels=asked, position="not-a-position")
    await one.socket.wait_for("recovery", within=20)
    assert one.received("recovery")[0]["channels"] == dict.fromkeys(asked[:MAX_PER_SOCKET], True)
    held = registry["channels"].channels_of(one.client.get_sid())
    assert held == set(asked[:MAX_PER_SOCKET])
    assert code_of(await one.subscribe("room:more")) == "too_many_subscriptions"


@pytest.mark.gen_test(timeout=120)
async def test_a_dropped_socket_gets_its_channels_back_and_their_missed_messages_once_in_order(
    app, api, base_url, db, registry, channel_clients
):
    msg = registry["transomMsgClient"]
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    bob = await api.new_user("bob")
    asked = ["room:a", "group:staff", "group:admin", "nope:x"]
    client = ChannelClient(api, ada, base_url, asked)
    channel_clients.append(client)
    await client.connect()
    await client.wait_until(lambda: len(client.recoveries()) == 1)
    verdicts = {"room:a": True, "group:staff": True, "group:admin": False, "nope:x": False}
    assert client.recoveries() == [{"complete": True, "count": 0, "channels": verdicts}]
    ticks = 0

    async def tick(not_for_ada: bool = False) -> None:
        """A tick Ada must get, on one of her channels or to her; or one she must not."""
        nonlocal ticks
        if not_for_ada:
            await msg.emitToChannel("room:b", "other", {"n": ticks})
            await msg.emitToChannel("group:admin", "other", {"n": ticks})
            await msg.emitToUsers(bob.id, "other", {"n": ticks})
            return
        kind = ticks % 3
        if kind == 0:
            await msg.emitToChannel("room:a", "tick", {"n": ticks})
        elif kind == 1:
            await msg.emitToChannel("group:staff", "tick", {"n": ticks})
        else:
            await msg.emitToUsers(ada.id, "tick", {"n": ticks})
        ticks += 1

    for _ in range(6):
        await tick()
    await client.wait_until(lambda: client.ticks() == list(range(6)))

    client.may_connect.clear()  # it comes back once the gap is emitted
    await drop_transports(app)
    await asyncio.wait_for(client.disconnected.wait(), 20)
    for n in range(30):
        await tick(not_for_ada=n % 5 == 0)
    client.may_connect.set()
    # And while it reconnects and its replay arrives.
    while len(client.recoveries()) < 2 and ticks < 2000:
        await tick()
        await asyncio.sleep(0.005)
    for _ in range(6):
        await tick()
    await client.wait_until(lambda: len(client.ticks()) >= ticks)
    await flush_client(msg, client)

    assert client.ticks() == list(range(ticks))  # once each, in order
    assert client.payloads("other") == []
    assert client.connects == 2
    second = client.recoveries()[1]
    assert second["complete"] is True and second["count"] >= 24
    assert second["channels"] == verdicts
    assert registry["channels"].channels_of(client.client.get_sid()) == {"room:a", "group:staff"}


async def flush_client(msg: Any, client: ChannelClient) -> None:
    mark = uuid.uuid4().hex
    await msg.emitToUsers(client.user.id, "sentinel", {"mark": mark})
    await client.wait_until(lambda: ("sentinel", {"mark": mark}) in client.arrivals)


@pytest.mark.gen_test(timeout=120)
async def test_a_user_who_lost_a_group_gets_back_only_the_channels_still_allowed(
    app, api, base_url, db, registry, channel_clients
):
    msg = registry["transomMsgClient"]
    admin = await in_groups(api, db, await api.new_user("root"), "admin")
    ada = await in_groups(api, db, await api.new_user("ada"), "staff")
    first = ChannelClient(api, ada, base_url, ["room:a", "group:staff"])
    channel_clients.append(first)
    await first.connect()
    await first.wait_until(lambda: len(first.recoveries()) == 1)
    await msg.emitToChannel("group:staff", "tick", {"n": 0})
    await msg.emitToChannel("room:a", "tick", {"n": 1})
    await first.wait_until(lambda: first.ticks() == [0, 1])

    # Her groups change: her JWT is revoked and her socket disconnected.
    await out_of_every_group(api, admin, ada)
    await asyncio.wait_for(first.disconnected.wait(), 20)

    # She logs in again and comes back from where she was, asking for both channels.
    again = ChannelClient(api, await relogin(api, ada), base_url, ["room:a", "group:staff"])
    channel_clients.append(again)
    await comes_back_with_only(registry, first, again, kept="room:a", lost="group:staff")


async def comes_back_with_only(
    registry: Any, first: ChannelClient, again: ChannelClient, kept: str, lost: str
) -> None:
    """``first`` held ``kept`` and ``lost`` (and got ticks 0 and 1), lost the right to
    ``lost`` and was disconnected. ``again``, of the same user, comes back from where
    ``first`` was, asking for both: it gets ``kept`` back with what it missed there,
    and neither ``lost`` nor anything sent to it."""
    msg = registry["transomMsgClient"]
    await msg.emitToChannel(lost, "tick", {"n": "lost"})
    await msg.emitToChannel(kept, "tick", {"n": 2})
    again.position = first.position
    await first.close()
    await again.connect()
    await again.wait_until(lambda: again.ticks() == [2])
    assert again.recoveries() == [
        {"complete": True, "count": 1, "channels": {kept: True, lost: False}}
    ]
    await msg.emitToChannel(lost, "tick", {"n": "still lost"})
    await msg.emitToChannel(kept, "tick", {"n": 3})
    await again.wait_until(lambda: again.ticks() == [2, 3])
    assert registry["channels"].channels_of(again.client.get_sid()) == {kept}


# The app's own data decides: a right it takes away ends the user's sockets (README) --


class TestARuleOnTheAppsOwnData:
    """A pattern whose function reads data of the app's own (here ``teams``, as a
    collection would hold it) is checked on subscription and on every reconnection.
    When that data takes a right away, the app ends the user's sockets
    (``disconnectUsers``); the client comes back, authorised again, and gets back only
    the channels still allowed, with what it missed of them."""

    teams: dict[str, set[str]]
    failing: bool  # whether the rule's read of ``teams`` fails

    @pytest.fixture
    def make_app(self, make_app, monkeypatch):
        self.teams, self.failing = {"red": set()}, False
        channels = Channels()
        channels.pattern("room")(lambda user, name: True)

        @channels.pattern("team")
        async def in_the_team(user: Any, name: str) -> bool:
            await asyncio.sleep(0)  # a database read, as far as the engine can tell
            if self.failing:
                raise AutoReconnect("connection refused")
            return user.user_id in self.teams.get(name, set())

        monkeypatch.setattr(example_app.app, "channels", channels)
        return make_app

    @pytest.mark.gen_test(timeout=120)
    async def test_a_user_taken_out_of_a_team_is_out_of_its_channel(
        self, api, base_url, registry, channel_clients
    ):
        msg = registry["transomMsgClient"]
        ada = await api.new_user("ada")
        self.teams["red"].add(ada.id)
        first = ChannelClient(api, ada, base_url, ["room:a", "team:red"])
        channel_clients.append(first)
        await first.connect()
        await first.wait_until(lambda: len(first.recoveries()) == 1)
        await msg.emitToChannel("team:red", "tick", {"n": 0})
        await msg.emitToChannel("room:a", "tick", {"n": 1})
        await first.wait_until(lambda: first.ticks() == [0, 1])

        self.teams["red"].discard(ada.id)
        assert await msg.disconnectUsers(ada.id) == 1
        await asyncio.wait_for(first.disconnected.wait(), 20)

        again = ChannelClient(api, ada, base_url, ["room:a", "team:red"])
        channel_clients.append(again)
        await comes_back_with_only(registry, first, again, kept="room:a", lost="team:red")

    @pytest.mark.gen_test(timeout=90)
    async def test_a_rule_that_fails_answers_unavailable_and_subscribes_nothing(
        self, api, sockets, registry, caplog
    ):
        ada = await api.new_user("ada")
        self.teams["red"].add(ada.id)
        adas = await tab(api, sockets, ada)
        self.failing = True
        with caplog.at_level(logging.ERROR, logger="transom_socketio.realtime.channels"):
            assert code_of(await adas.subscribe("team:red")) == "unavailable"
        assert registry["channels"].channels_of(adas.client.get_sid()) == frozenset()
        failures = [r for r in caplog.records if r.name == "transom_socketio.realtime.channels"]
        assert [r.getMessage() for r in failures] == ["subscription to 'team:red' failed"]
        assert failures[0].exc_info is not None  # the rule's traceback, for its author

        self.failing = False
        assert accepted(await adas.subscribe("team:red"))
        assert registry["channels"].channels_of(adas.client.get_sid()) == {"team:red"}

    @pytest.mark.gen_test(timeout=60)
    async def test_a_rule_that_fails_answers_presence_503_unavailable(self, api, caplog):
        ada = await api.new_user("ada")
        self.teams["red"].add(ada.id)
        self.failing = True
        with caplog.at_level(logging.ERROR, logger="transom_socketio.web.channels"):
            answer = await presence(api, ada, "team:red")
        assert (answer.status, answer.error_code) == (503, "unavailable"), answer.body
        failures = [r for r in caplog.records if r.name == "transom_socketio.web.channels"]
        assert [r.getMessage() for r in failures] == [
            "presence of 'team:red' not answered: its rule raised"
        ]
        assert failures[0].exc_info is not None
        self.failing = False  # decided again: allowed, and ``team`` keeps no presence
        answer = await presence(api, ada, "team:red")
        assert (answer.status, answer.error_code) == (404, "not_found"), answer.body

    @pytest.mark.gen_test(timeout=90)
    async def test_a_rule_that_fails_at_reconnection_restores_the_other_channels(
        self, api, sockets, registry
    ):
        ada = await api.new_user("ada")
        self.teams["red"].add(ada.id)
        self.failing = True
        auth = {"token": await api.socket_token(ada), "channels": ["room:a", "team:red"]}
        adas = await sockets.connect(auth=auth, events=("subscriptions",))
        restored = await adas.wait_for("subscriptions", within=20)
        assert restored == [{"channels": {"room:a": True, "team:red": False}}]
        assert registry["channels"].channels_of(adas.client.get_sid()) == {"room:a"}
