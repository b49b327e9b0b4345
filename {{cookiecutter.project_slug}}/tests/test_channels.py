"""This app's channels (channels.py): who may subscribe to what, where a channel's
message goes, and who a presence channel lists."""

from __future__ import annotations

import dataclasses

import pytest
from bson import ObjectId

MESSAGES = "/api/v1/db/message"


async def subscribe(socket, channel):
    """The acknowledgement of a ``subscribe``."""
    return await socket.client.call("subscribe", {"channel": channel}, timeout=10)


async def in_groups(api, db, user, *groups):
    """``user`` in ``groups``, logged in again: the JWT carries the user's groups."""
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}})
    logged_in = await api.login(user.username)
    assert logged_in.status == 200, logged_in.body
    return dataclasses.replace(user, token=logged_in.body["token"])


def in_room(members):
    """The acknowledgement of a presence channel's subscription: join and leave are sent
    (under the pattern's join_leave_limit), and how many members it has."""
    return {"ok": True, "presence": {"join_leave": True, "members": members}}


def member(user):
    return {"_id": user.id, "username": user.username, "display_name": user.username}


@pytest.mark.gen_test(timeout=30)
async def test_anyone_signed_in_joins_a_room_but_a_group_only_its_members(api, db, sockets):
    ada = await api.new_user("ada")
    socket = await sockets.connect(await api.socket_token(ada))
    assert await subscribe(socket, "room:lobby") == in_room(1)
    refused = await subscribe(socket, "group:admin")
    assert refused["ok"] is False
    assert refused["error"]["code"] == "forbidden"
    assert (await subscribe(socket, "nothing:here"))["error"]["code"] == "invalid_channel"

    admin = await in_groups(api, db, await api.new_user("root"), "admin")
    admin_socket = await sockets.connect(await api.socket_token(admin))
    assert await subscribe(admin_socket, "group:admin") == {"ok": True}
    assert (await subscribe(admin_socket, "group:moderators"))["error"]["code"] == "forbidden"


@pytest.mark.gen_test(timeout=30)
async def test_a_channel_message_reaches_its_subscribers_only(api, sockets):
    ada, bob, cyd = [await api.new_user(name) for name in ("ada", "bob", "cyd")]
    ada_socket = await sockets.connect(await api.socket_token(ada))
    bob_socket = await sockets.connect(await api.socket_token(bob))
    cyd_socket = await sockets.connect(await api.socket_token(cyd))
    for members, socket in enumerate((ada_socket, bob_socket), start=1):
        assert await subscribe(socket, "room:lobby") == in_room(members)

    sent = await api.request(
        "POST", MESSAGES, {"text": "hi lobby", "channel": "room:lobby"}, token=ada.token
    )
    assert sent.status == 201, sent.body
    message = sent.body["message"]
    assert message["channel"] == "room:lobby" and message["to"] is None
    # A broadcast after it: cyd gets that one first, so the lobby's never came.
    broadcast = await api.request("POST", MESSAGES, {"text": "hi all"}, token=ada.token)
    for socket in (ada_socket, bob_socket):
        assert await socket.wait_for("message", 2) == [message, broadcast.body["message"]]
    assert await cyd_socket.wait_for("message") == [broadcast.body["message"]]

    # Nobody posts to a channel they may not join.
    refused = await api.request(
        "POST", MESSAGES, {"text": "hi admins", "channel": "group:admin"}, token=ada.token
    )
    assert refused.status == 403, refused.body


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("settings_overrides", [{"presence_grace_seconds": 0}])
async def test_a_room_lists_its_members_and_tells_them_who_comes_and_goes(api, sockets):
    ada, bob, cyd = [await api.new_user(name) for name in ("ada", "bob", "cyd")]
    ada_socket = await sockets.connect(await api.socket_token(ada), events=("join", "leave"))
    bob_socket = await sockets.connect(await api.socket_token(bob), events=("join", "leave"))
    cyd_socket = await sockets.connect(await api.socket_token(cyd), events=("join", "leave"))
    assert await subscribe(ada_socket, "room:lobby") == in_room(1)
    assert await subscribe(bob_socket, "room:lobby") == in_room(2)
    assert await ada_socket.wait_for("join") == [{"channel": "room:lobby", "user": member(bob)}]

    listed = await api.request("GET", "/api/v1/channels/room:lobby/presence", token=cyd.token)
    assert listed.status == 200, listed.body
    assert listed.body["presence"]["channel"] == "room:lobby"
    members = sorted(listed.body["presence"]["members"], key=lambda one: one["username"])
    assert members == [member(ada), member(bob)]

    assert await bob_socket.client.call("unsubscribe", {"channel": "room:lobby"}) == {"ok": True}
    assert await ada_socket.wait_for("leave") == [{"channel": "room:lobby", "user": member(bob)}]
    assert cyd_socket.received("join") == [] and cyd_socket.received("leave") == []
    listed = await api.request("GET", "/api/v1/channels/room:lobby/presence", token=ada.token)
    assert listed.body["presence"]["members"] == [member(ada)]

    # A group's list is for its members only.
    refused = await api.request("GET", "/api/v1/channels/group:admin/presence", token=ada.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")


@pytest.mark.gen_test(timeout=30)
async def test_the_messages_listed_are_those_of_the_channels_one_may_join(api, db, sockets):
    """channels.py states each rule once: the list of messages (models/message.py) and
    the subscriptions agree, for every channel a message may be in."""
    author = await in_groups(api, db, await api.new_user("author"), "admin", "staff")
    ada = await api.new_user("ada")
    root = await in_groups(api, db, await api.new_user("root"), "admin")
    names = ["room:lobby", "room:a.b~c-d_E9", "group:admin", "group:staff", "group:adm"]
    sent = {}
    for channel in names:
        posted = await api.request(
            "POST", MESSAGES, {"text": channel, "channel": channel}, token=author.token
        )
        if posted.status == 201:
            sent[posted.body["message"]["_id"]] = channel
    assert sorted(sent.values()) == sorted(names[:-1])  # no author in group:adm
    for user in (ada, root):
        page = await api.request("GET", MESSAGES, token=user.token)
        assert page.status == 200, page.body
        listed = {sent[m["_id"]] for m in page.body["messages"] if m["_id"] in sent}
        socket = await sockets.connect(await api.socket_token(user))
        allowed = {c for c in sent.values() if (await subscribe(socket, c))["ok"] is True}
        assert listed == allowed, user.username
        assert "room:lobby" in listed and "group:staff" not in listed
