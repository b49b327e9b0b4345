"""Channel rules as data (realtime/channels.py): one rule per pattern gives both the
check on a subscription and ``Channels.readable_query``, and the query, run on a real
database, finds exactly the channels the check allows; a pattern declared with a
function reads nothing through the query unless it gives its own condition."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from bson import ObjectId

from transom_socketio.auth.tokens import Principal
from transom_socketio.realtime.channels import (
    GROUP_MEMBERS,
    SIGNED_IN,
    USER_ITSELF,
    ChannelRefused,
    Channels,
    members_of,
)

ADA_ID = str(ObjectId())


def principal(user_id: str, *groups: str) -> Principal:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return Principal(user_id, "someone", tuple(groups), uuid.uuid4().hex, expires)


def team_channels(user: Principal, prefix: str) -> dict[str, Any]:
    teams = [group.removeprefix("team-") for group in user.groups if group.startswith("team-")]
    return {"$in": [f"{prefix}:{team}" for team in teams]}


def declared() -> Channels:
    channels = Channels()
    channels.declare("room", SIGNED_IN, presence=True)
    channels.declare("group", GROUP_MEMBERS)
    channels.declare("inbox", USER_ITSELF)
    channels.declare("staff", members_of("staff"))
    # Functions: one with its condition, one without (read through the query by nobody).
    channels.pattern("team", readable=team_channels)(
        lambda user, name: f"team-{name}" in user.groups
    )
    channels.pattern("secret")(lambda user, name: True)
    return channels


USERS = [
    principal(ADA_ID),
    principal(str(ObjectId()), "admin", "staff"),
    principal(str(ObjectId()), "team-red", "adm", "a.b", "bad name", "x" * 101),
    principal(str(ObjectId()), "room", "group:admin", ".*", "$where"),
]

# What may be stored in a channel field, well formed or not: names that are prefixes
# of others, regex characters, operators, a trailing newline, other patterns.
CHANNELS = [
    "room:lobby",
    "room:Az09_.~-",
    "room:" + "n" * 100,
    "room:" + "n" * 101,
    "room:",
    "room",
    "roomy:lobby",
    "xroom:lobby",
    "room:a:b",
    "room:a b",
    "room:lobby\n",
    "Room:lobby",
    "group:admin",
    "group:adm",
    "group:admin.x",
    "group:a.b",
    "group:aXb",
    "group:.*",
    "group:$where",
    "group:room",
    "group:staff",
    f"inbox:{ADA_ID}",
    f"inbox:{ADA_ID}x",
    "inbox:" + "0" * 24,
    "staff:anything",
    "staff:",
    "team:red",
    "team:blue",
    "secret:x",
    "nothing:x",
]


async def may_subscribe(channels: Channels, user: Principal, channel: str) -> bool:
    try:
        await channels.authorize(user, channel)
    except ChannelRefused:
        return False
    return True


@pytest.mark.gen_test(timeout=30)
async def test_the_query_finds_exactly_the_channels_the_rule_lets_one_subscribe_to(db):
    channels = declared()
    collection = db[f"rules_{uuid.uuid4().hex}"]
    await collection.insert_many([{"channel": channel} for channel in CHANNELS])
    await collection.insert_one({"channel": None})
    try:
        for user in USERS:
            query = channels.readable_query(user)
            found = sorted([doc["channel"] async for doc in collection.find(query)])
            allowed = [
                channel
                for channel in CHANNELS
                if await may_subscribe(channels, user, channel)
                and not channel.startswith("secret:")  # a function with no condition
            ]
            assert found == sorted(allowed), user.groups
    finally:
        await collection.drop()


def test_the_query_uses_exact_names_and_escaped_anchored_prefixes():
    user = principal(ADA_ID, "adm", ".x", ".*")  # ".*": no channel's name, left out
    query = declared().readable_query(user, field="doc.channel")
    assert query == {
        "$or": [
            {"doc.channel": {"$regex": r"^room:[A-Za-z0-9_.~-]{1,100}\z"}},
            {"doc.channel": {"$in": ["group:.x", "group:adm"]}},
            {"doc.channel": {"$in": [f"inbox:{ADA_ID}"]}},
            {"doc.channel": {"$in": []}},
        ]
    }
    # No pattern with a condition: a query that matches no channel.
    only_functions = Channels()
    only_functions.pattern("secret")(lambda user, name: True)
    assert only_functions.readable_query(principal(ADA_ID)) == {"channel": {"$in": []}}
    one = Channels()
    one.declare("room", SIGNED_IN)
    assert one.readable_query(principal(ADA_ID)) == {"channel": every_room()}


def every_room() -> dict[str, Any]:
    return {"$regex": r"^room:[A-Za-z0-9_.~-]{1,100}\z"}


def test_a_rule_reads_as_its_name():
    assert [repr(rule) for rule in (SIGNED_IN, GROUP_MEMBERS, USER_ITSELF)] == [
        "SIGNED_IN",
        "GROUP_MEMBERS",
        "USER_ITSELF",
    ]
    assert repr(members_of("staff")) == "members_of('staff')"


def test_declare_takes_a_rule_and_checks_the_pattern_as_the_decorator_does():
    channels = Channels()
    channels.declare("room", SIGNED_IN, presence=True, join_leave_limit=None)
    pattern, name = channels.parse("room:lobby")
    assert (pattern.presence, pattern.join_leave_limit, name) == (True, None, "lobby")
    with pytest.raises(ValueError, match="declared already"):
        channels.declare("room", SIGNED_IN)
    with pytest.raises(ValueError, match="must be a ChannelRule"):
        channels.declare("fn", lambda user, name: True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="join_leave_limit"):
        channels.declare("big", SIGNED_IN, presence=True, join_leave_limit=0)
    with pytest.raises(ValueError, match="channel pattern is"):
        channels.declare("Bad", SIGNED_IN)
    assert channels.prefixes == {"room"}
