"""Channels with REDIS_URL: rooms, history and channel presence in Redis
(realtime/redis_channel_presence.py)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from conftest import ON_REDIS

# Every test of test_channels.py, again with REDIS_URL (collected here under this module's
# fixtures), and the tests that only make sense with Redis.
from test_channels import *  # noqa: F403
from test_channels import flush, members, post, tab

from transom_socketio.realtime.redis_channel_presence import channel_hash

pytestmark = ON_REDIS


# Names a client chose: what Redis would take as a separator, a pattern, an operator.
ODD_NAMES = ["room:a.b~c-d_E9", "room:x~y", "room:...", "room:--", "room:" + "k" * 100]
REFUSED_NAMES = ["room:*", "room:a:b", "room:{x}", "room:[ab]", "room:a b", "room:\\x"]
NAME_FRAGMENTS = ["room", "a.b~c", "x~y", "...", "--", "k" * 100, "*", "{", "[", " ", "\\"]


@pytest.mark.gen_test(timeout=90)
async def test_channel_names_never_make_redis_keys(api, sockets, settings, registry):
    msg = registry["transomMsgClient"]
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    adas, bobs = await tab(api, sockets, ada), await tab(api, sockets, bob)
    for name in ODD_NAMES:
        await adas.joined(name)
    for name in REFUSED_NAMES:
        assert (await bobs.subscribe(name))["error"]["code"] == "invalid_channel", name
        assert await bobs.unsubscribe(name) == {"ok": True}  # one it does not hold
    await bobs.joined(ODD_NAMES[0])
    sent = await post(api, bob, text="hi", channel=ODD_NAMES[0])
    assert sent.status == 201, sent.body
    for name in ODD_NAMES:
        await msg.emitToChannel(name, "news", {"to": name})
    await flush(msg, adas, bobs)
    assert [n["to"] for n in adas.received("news")] == ODD_NAMES
    assert await members(api, ada, ODD_NAMES[0]) == ["ada", "bob"]

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = [key.decode() async for key in redis.scan_iter(match=f"{settings.redis_channel}*")]
    finally:
        await redis.aclose()
    assert keys, keys
    # What stands for a channel in its keys is a hash of its name...
    for name in ODD_NAMES:
        assert any(channel_hash(name) in key for key in keys), (name, keys)
    # ... and nothing of the name itself, nor of a refused one.
    for key in keys:
        tail = key[len(settings.redis_channel) :]
        for fragment in NAME_FRAGMENTS:
            assert fragment not in tail, (fragment, key)
