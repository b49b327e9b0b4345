"""Two deployments on one Redis server, each on a database of its own, do not hear each
other (found by a review: Redis's pub/sub ignores the database number, so ephemeral
emits, ``presence`` events and logouts of one reached the sockets of the other)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import ON_REDIS, REDIS_URL

from transom_socketio.realtime.redis_queue import (
    close_write_only,
    pubsub_channel,
    write_only_message_client,
)

pytestmark = ON_REDIS


def on_database(url: str, database: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def test_the_channel_names_the_database_unless_it_is_0():
    assert pubsub_channel("redis://h:6379/0", "app") == "app"
    assert pubsub_channel("redis://h:6379", "app") == "app"
    assert pubsub_channel("redis://h:6379/", "app") == "app"
    assert pubsub_channel("redis://h:6379/3", "app") == "app:db3"
    assert pubsub_channel("redis://h:6379/?db=4", "app") == "app:db4"
    assert pubsub_channel("unix:///run/redis.sock?db=5", "app") == "app:db5"
    assert pubsub_channel("unix:///run/redis.sock", "app") == "app"


@pytest.mark.gen_test(timeout=60)
async def test_deployments_on_two_databases_of_one_redis_do_not_hear_each_other(api, app, sockets):
    ada = await api.new_user()
    tab = await sockets.connect(await api.socket_token(ada))
    here = app.settings["services"].settings
    this_database = urlsplit(REDIS_URL).path.strip("/") or "0"
    other_database = 1 if this_database != "1" else 2
    for url, text in (
        (on_database(REDIS_URL, other_database), "from the other deployment"),
        (REDIS_URL, "from this deployment"),
    ):
        worker = write_only_message_client(here.model_copy(update={"redis_url": url}))
        try:
            # Ephemeral: by the room manager's pub/sub (the history's stream is a key).
            await worker.emitToEveryone("message", {"text": text}, ephemeral=True)
        finally:
            await close_write_only(worker)
    await tab.wait_for("message")
    await asyncio.sleep(0.5)  # the other deployment's, had it come, came first
    assert tab.received("message") == [{"text": "from this deployment"}]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("ephemeral", [True, False], ids=["ephemeral", "recorded"])
async def test_a_burst_of_emits_over_the_pubsub_reaches_the_socket_every_one(
    api, registry, sockets, caplog, ephemeral
):
    """Found by a review: python-socketio's Redis manager publishes on redis-py's default
    pool, which fails the 101st concurrent call (MaxConnectionsError); the manager then
    logs an error, drops its client for a new one and publishes again."""
    msg = registry["transomMsgClient"]
    ada = await api.new_user()
    tab = await sockets.connect(await api.socket_token(ada), events=("tick",))
    await asyncio.gather(
        *(msg.emitToUsers(ada.id, "tick", {"n": n}, ephemeral=ephemeral) for n in range(300))
    )
    ticks = await tab.wait_for("tick", 300)
    assert sorted(tick["n"] for tick in ticks) == list(range(300))
    assert not [r for r in caplog.records if "redis" in r.getMessage().lower()], caplog.text
