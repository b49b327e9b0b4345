"""Who is in a presence channel: the store's transitions (realtime/channel_presence.py).

Each test takes ``presence``, one process's store: ``LocalChannelPresence`` here, and
``RedisChannelPresence`` in test_channel_presence_redis.py, which runs these tests again.
"""

from __future__ import annotations

import pytest

from transom_socketio.realtime.channel_presence import (
    ChannelCounted,
    ChannelPresence,
    JoinLeave,
    LocalChannelPresence,
    resume_at,
)

ADA, BOB, CYD = "a" * 24, "b" * 24, "c" * 24

# Names a client may choose: separators of Redis keys, unicode, what looks like a key.
ODD_CHANNELS = [
    "room:a:b",
    "room:a",
    "caf\u00e9 \u65e5\u672c\u8a9e \U0001f389",
    "x:channel-presence:channel:users",
    "*?[]{}\\",
    "",
]


@pytest.fixture
def presence() -> ChannelPresence:
    return LocalChannelPresence()


def counts(change: ChannelCounted | None) -> tuple[int, bool] | None:
    """A transition's socket count and news (None: nothing changed)."""
    return None if change is None else (change.sockets, change.news)


def is_gone(change: ChannelCounted | None) -> bool:
    """Whether the end of a grace found the user gone (None: the store failed, no)."""
    return change is not None and change.news


@pytest.mark.gen_test(timeout=30)
async def test_a_first_socket_is_news_and_a_second_is_not(presence: ChannelPresence):
    assert counts(await presence.subscribed("room", ADA)) == (1, True)
    assert counts(await presence.subscribed("room", ADA)) == (2, False)
    # Another user in the channel, the same user in another channel: news of their own.
    assert counts(await presence.subscribed("room", BOB)) == (1, True)
    assert counts(await presence.subscribed("hall", ADA)) == (1, True)


@pytest.mark.gen_test(timeout=30)
async def test_the_last_socket_leaving_is_news_and_gone_after_the_grace(
    presence: ChannelPresence,
):
    await presence.subscribed("room", ADA)
    await presence.subscribed("room", ADA)
    assert counts(await presence.unsubscribed("room", ADA, "m1")) == (1, False)
    assert counts(await presence.unsubscribed("room", ADA, "m2")) == (0, True)
    assert await presence.members("room", 10) == [ADA]  # in the grace: no leave sent yet
    assert is_gone(await presence.gone("room", ADA, "m2")) is True
    assert await presence.members("room", 10) == []  # the leave is sent: off the list


@pytest.mark.gen_test(timeout=30)
async def test_coming_back_within_the_grace_is_not_news(presence: ChannelPresence):
    await presence.subscribed("room", ADA)
    assert counts(await presence.unsubscribed("room", ADA, "m1")) == (0, True)
    assert counts(await presence.subscribed("room", ADA)) == (1, False)  # back: no join
    assert is_gone(await presence.gone("room", ADA, "m1")) is False  # and no leave

    # They leave again: the later grace decides, not the first one's end.
    assert counts(await presence.unsubscribed("room", ADA, "m2")) == (0, True)
    assert is_gone(await presence.gone("room", ADA, "m1")) is False
    assert is_gone(await presence.gone("room", ADA, "m2")) is True

    # Once gone, a socket is news again.
    assert counts(await presence.subscribed("room", ADA)) == (1, True)


@pytest.mark.gen_test(timeout=30)
async def test_a_comeback_after_a_later_departure_still_cancels_it(presence: ChannelPresence):
    await presence.subscribed("room", ADA)
    await presence.unsubscribed("room", ADA, "m1")
    await presence.subscribed("room", ADA)
    await presence.unsubscribed("room", ADA, "m2")
    assert counts(await presence.subscribed("room", ADA)) == (1, False)
    assert is_gone(await presence.gone("room", ADA, "m1")) is False
    assert is_gone(await presence.gone("room", ADA, "m2")) is False
    assert await presence.members("room", 10) == [ADA]


@pytest.mark.gen_test(timeout=30)
async def test_unsubscribed_without_subscribed_changes_nothing(presence: ChannelPresence):
    assert await presence.unsubscribed("room", ADA, "m1") is None
    await presence.subscribed("room", BOB)
    assert await presence.unsubscribed("room", ADA, "m1") is None  # not ada's channel
    assert await presence.unsubscribed("hall", BOB, "m1") is None  # not bob's channel
    assert await presence.members("room", 10) == [BOB]

    assert counts(await presence.unsubscribed("room", BOB, "m2")) == (0, True)
    assert await presence.unsubscribed("room", BOB, "m3") is None  # once is enough
    assert is_gone(await presence.gone("room", BOB, "m2")) is True  # m3 did not replace m2
    assert counts(await presence.subscribed("room", ADA)) == (1, True)


@pytest.mark.gen_test(timeout=30)
async def test_members_lists_each_user_with_a_socket_once_up_to_the_limit(
    presence: ChannelPresence,
):
    for user in (ADA, BOB, BOB, CYD):
        await presence.subscribed("room", user)
    await presence.subscribed("hall", ADA)
    members = await presence.members("room", 10)
    assert sorted(members) == [ADA, BOB, CYD]
    two = await presence.members("room", 2)
    assert len(two) == 2 and len(set(two)) == 2 and set(two) <= {ADA, BOB, CYD}
    assert await presence.members("room", 0) == []
    assert await presence.members("nowhere", 10) == []

    await presence.unsubscribed("room", BOB, "m1")  # one of two: still there
    await presence.unsubscribed("room", CYD, "m2")  # in the grace: listed until gone
    assert sorted(await presence.members("room", 10)) == [ADA, BOB, CYD]
    assert is_gone(await presence.gone("room", CYD, "m2")) is True
    assert sorted(await presence.members("room", 10)) == [ADA, BOB]
    assert await presence.members("hall", 10) == [ADA]


@pytest.mark.gen_test(timeout=30)
async def test_channels_with_odd_names_are_channels_like_any_other(presence: ChannelPresence):
    for number, channel in enumerate(ODD_CHANNELS):
        assert counts(await presence.subscribed(channel, ADA)) == (1, True), channel
        for _ in range(number):
            await presence.subscribed(channel, BOB)
    for number, channel in enumerate(ODD_CHANNELS):
        expected = [ADA, BOB] if number else [ADA]
        assert sorted(await presence.members(channel, 10)) == expected, channel
    # Leaving one (a prefix of another's name, too) leaves the others as they were.
    assert counts(await presence.unsubscribed("room:a", ADA, "m")) == (0, True)
    assert is_gone(await presence.gone("room:a", ADA, "m")) is True
    assert sorted(await presence.members("room:a:b", 10)) == [ADA]
    assert counts(await presence.subscribed("room:a:b", ADA)) == (2, False)


# Members in their leave grace (issue 23): nobody was told they left, so they are
# listed until the grace's end finds them gone (the leave is sent then).


@pytest.mark.gen_test(timeout=30)
async def test_a_user_in_the_leave_grace_is_listed_until_the_grace_ends(
    presence: ChannelPresence,
):
    await presence.subscribed("room", ADA)
    await presence.subscribed("room", BOB)
    await presence.subscribed("hall", CYD)
    assert counts(await presence.unsubscribed("room", ADA, "m1")) == (0, True)
    # Whoever reads the list in the grace (a new subscriber, one refetching) sees her.
    assert sorted(await presence.members("room", 10)) == [ADA, BOB]
    assert await presence.members("hall", 10) == [CYD]  # another channel: as it was
    assert is_gone(await presence.gone("room", ADA, "m1")) is True
    assert await presence.members("room", 10) == [BOB]


@pytest.mark.gen_test(timeout=30)
async def test_a_user_back_within_the_grace_is_listed_once(presence: ChannelPresence):
    await presence.subscribed("room", ADA)
    await presence.subscribed("room", ADA)
    await presence.unsubscribed("room", ADA, "m1")
    await presence.unsubscribed("room", ADA, "m2")
    assert await presence.members("room", 10) == [ADA]
    assert counts(await presence.subscribed("room", ADA)) == (1, False)  # no join
    assert await presence.members("room", 10) == [ADA]
    assert is_gone(await presence.gone("room", ADA, "m2")) is False  # no leave
    assert await presence.members("room", 10) == [ADA]

    # Gone again; a grace that was not the last one's ends: still listed.
    assert counts(await presence.unsubscribed("room", ADA, "m3")) == (0, True)
    assert is_gone(await presence.gone("room", ADA, "m2")) is False
    assert await presence.members("room", 10) == [ADA]
    assert is_gone(await presence.gone("room", ADA, "m3")) is True
    assert await presence.members("room", 10) == []
    # A grace's end once more (its news is the store's own affair) lists nobody back.
    await presence.gone("room", ADA, "m3")
    assert await presence.members("room", 10) == []


@pytest.mark.gen_test(timeout=30)
async def test_members_in_the_grace_come_after_those_with_a_socket_within_the_limit(
    presence: ChannelPresence,
):
    for user in (ADA, BOB, CYD):
        await presence.subscribed("room", user)
    await presence.unsubscribed("room", BOB, "m1")
    await presence.unsubscribed("room", CYD, "m2")
    assert await presence.members("room", 1) == [ADA]
    two = await presence.members("room", 2)
    assert two[0] == ADA and len(set(two)) == 2 and set(two) <= {ADA, BOB, CYD}
    assert sorted(await presence.members("room", 3)) == [ADA, BOB, CYD]
    assert sorted(await presence.members("room", 10)) == [ADA, BOB, CYD]
    assert await presence.members("room", 0) == []
    # Only users in their grace: the limit holds all the same.
    await presence.unsubscribed("room", ADA, "m3")
    one = await presence.members("room", 1)
    assert len(one) == 1 and one[0] in {ADA, BOB, CYD}
    assert sorted(await presence.members("room", 10)) == [ADA, BOB, CYD]


@pytest.mark.gen_test(timeout=30)
async def test_users_in_the_grace_do_not_count_towards_the_join_leave_limit(
    presence: ChannelPresence,
):
    # The limit bounds deliveries: a user in the grace has no socket to deliver to.
    await presence.subscribed("room", ADA, 2)
    await presence.subscribed("room", BOB, 2)
    left = await presence.unsubscribed("room", BOB, "m1", 2)
    assert left is not None and left.join_leave == JoinLeave(1, True)
    assert await presence.join_leave("room") == JoinLeave(1, True)
    assert sorted(await presence.members("room", 10)) == [ADA, BOB]
    # Two more with a socket: three members, one past the limit; Bob is not a fourth.
    await presence.subscribed("room", CYD, 2)
    tipped = await presence.subscribed("room", "d" * 24, 2)
    assert tipped is not None and tipped.join_leave == JoinLeave(3, False, True)


# Join and leave past a pattern's join_leave_limit (realtime/channels.py) -------------


def test_join_and_leave_resume_a_tenth_below_the_limit():
    assert [resume_at(limit) for limit in (1, 2, 9, 10, 100, 1000)] == [0, 1, 8, 9, 90, 900]


@pytest.mark.gen_test(timeout=30)
async def test_a_channel_goes_quiet_past_its_limit_and_back_a_tenth_below(
    presence: ChannelPresence,
):
    limit = 2  # quiet at 3 members, join and leave again at 1
    users = [ADA, BOB, CYD]
    modes = [(await presence.subscribed("room", user, limit)).join_leave for user in users]
    assert modes == [JoinLeave(1, True), JoinLeave(2, True), JoinLeave(3, False, True)]
    # A second socket, another user's change: quiet still, no switch.
    assert (await presence.subscribed("room", CYD, limit)).join_leave == JoinLeave(3, False)
    assert await presence.join_leave("room") == JoinLeave(3, False)
    assert await presence.join_leave("hall") == JoinLeave(0, True)  # another channel

    # Down to the limit: still quiet (a reload at the limit switches nothing).
    await presence.unsubscribed("room", CYD, "m1", limit)
    left = await presence.unsubscribed("room", CYD, "m2", limit)
    assert left == ChannelCounted(0, True, JoinLeave(2, False))
    back = await presence.subscribed("room", CYD, limit)
    assert back == ChannelCounted(1, False, JoinLeave(3, False))

    await presence.unsubscribed("room", CYD, "m3", limit)
    # The end of the grace counts, and says whether the user is gone, as before.
    assert await presence.gone("room", CYD, "m3", limit) == ChannelCounted(
        0, True, JoinLeave(2, False)
    )
    resumed = await presence.unsubscribed("room", BOB, "m4", limit)
    assert resumed == ChannelCounted(0, True, JoinLeave(1, True, True))  # the one switch
    assert (await presence.gone("room", BOB, "m4", limit)).join_leave == JoinLeave(1, True)
    assert await presence.join_leave("room") == JoinLeave(1, True)


@pytest.mark.gen_test(timeout=30)
async def test_without_a_limit_a_channel_never_goes_quiet(presence: ChannelPresence):
    for user in (ADA, BOB, CYD):
        change = await presence.subscribed("room", user)
        assert change.join_leave.on and not change.join_leave.switched
    assert await presence.join_leave("room") == JoinLeave(3, True)


@pytest.mark.gen_test(timeout=30)
async def test_an_emptied_quiet_channel_is_forgotten(presence: ChannelPresence):
    await presence.subscribed("room", ADA, 1)
    assert (await presence.subscribed("room", BOB, 1)).join_leave == JoinLeave(2, False, True)
    await presence.unsubscribed("room", ADA, "m1", 1)
    emptied = await presence.unsubscribed("room", BOB, "m2", 1)
    assert emptied.join_leave == JoinLeave(0, True, True)
    assert await presence.join_leave("room") == JoinLeave(0, True)
