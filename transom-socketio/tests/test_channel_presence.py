"""Who is in a presence channel: the store's transitions (realtime/channel_presence.py).

Each test takes ``presence``, one process's store: ``LocalChannelPresence`` here, and
``RedisChannelPresence`` in test_channel_presence_redis.py, which runs these tests again.
"""

from __future__ import annotations

import pytest

from transom_socketio.realtime.channel_presence import ChannelPresence, LocalChannelPresence
from transom_socketio.realtime.presence import Counted

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


@pytest.mark.gen_test(timeout=30)
async def test_a_first_socket_is_news_and_a_second_is_not(presence: ChannelPresence):
    assert await presence.subscribed("room", ADA) == Counted(1, True)
    assert await presence.subscribed("room", ADA) == Counted(2, False)
    # Another user in the channel, the same user in another channel: news of their own.
    assert await presence.subscribed("room", BOB) == Counted(1, True)
    assert await presence.subscribed("hall", ADA) == Counted(1, True)


@pytest.mark.gen_test(timeout=30)
async def test_the_last_socket_leaving_is_news_and_gone_after_the_grace(
    presence: ChannelPresence,
):
    await presence.subscribed("room", ADA)
    await presence.subscribed("room", ADA)
    assert await presence.unsubscribed("room", ADA, "m1") == Counted(1, False)
    assert await presence.unsubscribed("room", ADA, "m2") == Counted(0, True)
    assert await presence.members("room", 10) == []  # gone from the list at once
    assert await presence.gone("room", ADA, "m2") is True


@pytest.mark.gen_test(timeout=30)
async def test_coming_back_within_the_grace_is_not_news(presence: ChannelPresence):
    await presence.subscribed("room", ADA)
    assert await presence.unsubscribed("room", ADA, "m1") == Counted(0, True)
    assert await presence.subscribed("room", ADA) == Counted(1, False)  # back: no join
    assert await presence.gone("room", ADA, "m1") is False  # and no leave

    # They leave again: the later grace decides, not the first one's end.
    assert await presence.unsubscribed("room", ADA, "m2") == Counted(0, True)
    assert await presence.gone("room", ADA, "m1") is False
    assert await presence.gone("room", ADA, "m2") is True

    # Once gone, a socket is news again.
    assert await presence.subscribed("room", ADA) == Counted(1, True)


@pytest.mark.gen_test(timeout=30)
async def test_a_comeback_after_a_later_departure_still_cancels_it(presence: ChannelPresence):
    await presence.subscribed("room", ADA)
    await presence.unsubscribed("room", ADA, "m1")
    await presence.subscribed("room", ADA)
    await presence.unsubscribed("room", ADA, "m2")
    assert await presence.subscribed("room", ADA) == Counted(1, False)
    assert await presence.gone("room", ADA, "m1") is False
    assert await presence.gone("room", ADA, "m2") is False
    assert await presence.members("room", 10) == [ADA]


@pytest.mark.gen_test(timeout=30)
async def test_unsubscribed_without_subscribed_changes_nothing(presence: ChannelPresence):
    assert await presence.unsubscribed("room", ADA, "m1") is None
    await presence.subscribed("room", BOB)
    assert await presence.unsubscribed("room", ADA, "m1") is None  # not ada's channel
    assert await presence.unsubscribed("hall", BOB, "m1") is None  # not bob's channel
    assert await presence.members("room", 10) == [BOB]

    assert await presence.unsubscribed("room", BOB, "m2") == Counted(0, True)
    assert await presence.unsubscribed("room", BOB, "m3") is None  # once is enough
    assert await presence.gone("room", BOB, "m2") is True  # m3 did not replace m2
    assert await presence.subscribed("room", ADA) == Counted(1, True)


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
    await presence.unsubscribed("room", CYD, "m2")  # gone from the list at once
    assert sorted(await presence.members("room", 10)) == [ADA, BOB]
    assert await presence.members("hall", 10) == [ADA]


@pytest.mark.gen_test(timeout=30)
async def test_channels_with_odd_names_are_channels_like_any_other(presence: ChannelPresence):
    for number, channel in enumerate(ODD_CHANNELS):
        assert await presence.subscribed(channel, ADA) == Counted(1, True), channel
        for _ in range(number):
            await presence.subscribed(channel, BOB)
    for number, channel in enumerate(ODD_CHANNELS):
        expected = [ADA, BOB] if number else [ADA]
        assert sorted(await presence.members(channel, 10)) == expected, channel
    # Leaving one (a prefix of another's name, too) leaves the others as they were.
    assert await presence.unsubscribed("room:a", ADA, "m") == Counted(0, True)
    assert await presence.gone("room:a", ADA, "m") is True
    assert sorted(await presence.members("room:a:b", 10)) == [ADA]
    assert await presence.subscribed("room:a:b", ADA) == Counted(2, False)
