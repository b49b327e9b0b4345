"""Join and leave stop in a presence channel past its pattern's ``join_leave_limit``
(realtime/channels.py), with real clients: under the limit they flow; past it nobody
gets one, the subscribers are told once (``channel_presence``) and the presence
endpoint still lists everyone; a tenth below the limit they resume, and are said to.

Every test here runs again with REDIS_URL in test_channel_presence_limit_redis.py.
"""

from __future__ import annotations

from typing import Any

import example_app.app
import pytest
from test_channels import Tab, code_of, flush, in_groups, members, presence, users_in

from transom_socketio.realtime.channels import CHANNEL_PRESENCE, Channels
from transom_socketio.testing.clients import Api, Sockets, User

EVENTS = ("join", "leave", CHANNEL_PRESENCE, "sentinel")
LIMIT = 3  # quiet at 4 members, join and leave again at 2 (channel_presence.resume_at)


def crowded_channels() -> Channels:
    """``crowd:<name>``: presence, join and leave up to LIMIT members; ``club:<name>``:
    presence for members of the group ``club-<name>`` only, with the same limit."""
    channels = Channels()
    channels.pattern("crowd", presence=True, join_leave_limit=LIMIT)(lambda user, name: True)
    channels.pattern("club", presence=True, join_leave_limit=LIMIT)(
        lambda user, name: f"club-{name}" in user.groups
    )
    return channels


@pytest.fixture
def make_app(make_app, monkeypatch):
    monkeypatch.setattr(example_app.app, "channels", crowded_channels())
    return make_app


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"presence_grace_seconds": 0}


async def tab(api: Api, sockets: Sockets, user: User) -> Tab:
    return Tab(
        user, await sockets.connect(auth={"token": await api.socket_token(user)}, events=EVENTS)
    )


def mode(join_leave: bool, members: int) -> dict[str, Any]:
    return {"ok": True, "presence": {"join_leave": join_leave, "members": members}}


def switch(channel: str, join_leave: bool, members: int) -> dict[str, Any]:
    return {"channel": channel, "join_leave": join_leave, "members": members}


async def listed(api: Api, user: User, channel: str) -> tuple[list[str], bool]:
    answer = await presence(api, user, channel)
    assert answer.status == 200, answer.body
    return await members(api, user, channel), answer.body["presence"]["join_leave"]


@pytest.mark.gen_test(timeout=90)
async def test_join_and_leave_stop_past_the_limit_and_resume_a_tenth_below(api, sockets, registry):
    msg = registry["transomMsgClient"]
    names = ("ada", "bob", "cyd", "dan", "eve")
    ada, bob, cyd, dan, eve = [await api.new_user(name) for name in names]
    adas, bobs, cyds, dans, eves = [
        await tab(api, sockets, user) for user in (ada, bob, cyd, dan, eve)
    ]

    # Under the limit: join flows, and each acknowledgement says so.
    assert await adas.subscribe("crowd:x") == mode(True, 1)
    assert await bobs.subscribe("crowd:x") == mode(True, 2)
    assert await cyds.subscribe("crowd:x") == mode(True, 3)
    await flush(msg, adas, bobs, cyds)
    assert users_in(adas.received("join"), "crowd:x") == ["bob", "cyd"]
    assert adas.received(CHANNEL_PRESENCE) == []

    # Past it: the one who tips it over learns it from its acknowledgement, the others
    # from one ``channel_presence``; nobody gets a join, now or later.
    assert await dans.subscribe("crowd:x") == mode(False, 4)
    assert await eves.subscribe("crowd:x") == mode(False, 5)
    await flush(msg, adas, bobs, cyds, dans, eves)
    for one in (adas, bobs, cyds):
        assert one.received(CHANNEL_PRESENCE) == [switch("crowd:x", False, 4)]
    assert dans.received(CHANNEL_PRESENCE) == eves.received(CHANNEL_PRESENCE) == []
    assert users_in(adas.received("join"), "crowd:x") == ["bob", "cyd"]
    assert users_in(bobs.received("join"), "crowd:x") == ["cyd"]
    assert cyds.received("join") == dans.received("join") == eves.received("join") == []
    # The endpoint lists everyone all the same, and says join and leave are off.
    assert await listed(api, cyd, "crowd:x") == (list(names), False)

    # Leaving, down to the limit and below: no leave, still quiet (no flip-flop).
    assert await eves.unsubscribe("crowd:x") == {"ok": True}
    assert await dans.unsubscribe("crowd:x") == {"ok": True}
    await flush(msg, adas, bobs, cyds)
    assert adas.received("leave") == [] and len(adas.received(CHANNEL_PRESENCE)) == 1
    assert await listed(api, ada, "crowd:x") == (["ada", "bob", "cyd"], False)

    # At resume_at(3) = 2 members: on again, once, to those still there.
    assert await cyds.unsubscribe("crowd:x") == {"ok": True}
    for one in (adas, bobs):
        await one.socket.wait_for(CHANNEL_PRESENCE, 2, within=20)
        assert one.received(CHANNEL_PRESENCE)[1] == switch("crowd:x", True, 2)
    assert await listed(api, ada, "crowd:x") == (["ada", "bob"], True)
    await flush(msg, cyds, dans)
    assert len(cyds.received(CHANNEL_PRESENCE)) == 1  # left before the switch
    assert dans.received(CHANNEL_PRESENCE) == []
    # And join flows again.
    assert await dans.subscribe("crowd:x") == mode(True, 3)
    await adas.socket.wait_for("join", 3, within=20)
    assert users_in(adas.received("join"), "crowd:x") == ["bob", "cyd", "dan"]


@pytest.mark.gen_test(timeout=90)
async def test_the_mode_reaches_only_the_channels_subscribers(api, sockets, db, registry):
    msg = registry["transomMsgClient"]
    chess = [
        await in_groups(api, db, await api.new_user(f"chess{n}"), "club-chess") for n in range(5)
    ]
    outsider = await in_groups(api, db, await api.new_user("out"), "club-go")
    tabs = [await tab(api, sockets, user) for user in chess]
    outsiders = await tab(api, sockets, outsider)
    assert code_of(await outsiders.subscribe("club:chess")) == "forbidden"
    assert (await outsiders.subscribe("club:go")) == mode(True, 1)
    for one in tabs:
        assert (await one.subscribe("club:chess"))["ok"] is True
    await flush(msg, outsiders, *tabs)
    assert outsiders.received(CHANNEL_PRESENCE) == []
    assert outsiders.received("join") == []
    assert tabs[0].received(CHANNEL_PRESENCE) == [switch("club:chess", False, 4)]
    forbidden = await presence(api, outsider, "club:chess")
    assert (forbidden.status, forbidden.error_code) == (403, "forbidden")
    assert "chess0" not in str(forbidden.body) and "members" not in str(forbidden.body)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "100", True, [100]])
def test_a_bad_limit_fails_at_declaration_in_one_line_naming_it(bad: Any):
    channels = Channels()
    with pytest.raises(ValueError) as refused:
        channels.pattern("room", presence=True, join_leave_limit=bad)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("channel pattern 'room': join_leave_limit must be a positive int")
    assert repr(bad) in message


def test_a_limit_may_be_any_positive_int_or_none():
    channels = Channels()
    for prefix, limit in (("a", 1), ("b", 100_000), ("c", None)):
        channels.pattern(prefix, presence=True, join_leave_limit=limit)(lambda user, name: True)
        assert channels.parse(f"{prefix}:x")[0].join_leave_limit == limit
    channels.pattern("d", presence=True)(lambda user, name: True)
    assert channels.parse("d:x")[0].join_leave_limit == 100  # Pusher's cap
