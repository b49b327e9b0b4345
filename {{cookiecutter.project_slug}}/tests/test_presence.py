"""Who is online: registry['transomMsgClient'].presence, GET /api/v1/presence and the
``presence`` event, with real python-socketio clients."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest
{%- if cookiecutter.message_queue == "redis" %}
import redis.asyncio as aioredis
{%- endif %}
import socketio

from {{ cookiecutter.project_slug }} import registry as keys

from .support import Api, SocketClient, Sockets


async def eventually(check: Callable[[], Any], within: float = 10.0) -> None:
    """Wait until ``check()`` (or what it returns, when awaitable) is true: the server
    handles a disconnect after the client has returned."""
    deadline = asyncio.get_running_loop().time() + within
    while not await _value(check()):
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def presence_of(client: SocketClient, user_id: str) -> list[tuple[bool, int]]:
    """The ``presence`` events ``client`` received about ``user_id``."""
    return [
        (event["online"], event["sockets"])
        for event in client.received("presence")
        if event["user"]["_id"] == user_id
    ]


@pytest.mark.gen_test(timeout=60)
async def test_presence_counts_every_tab_until_the_last_one_closes(api, sockets, registry):
    messages = registry["transomMsgClient"]
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    assert await messages.presence([ada.id, bob.id]) == {
        ada.id: {"online": False, "sockets": 0},
        bob.id: {"online": False, "sockets": 0},
    }
    tabs = [await sockets.connect(await api.socket_token(ada)) for _ in range(3)]
    assert await messages.presenceOf({"_id": ada.id}) == {ada.id: {"online": True, "sockets": 3}}
    assert (await messages.presence(bob.id))[bob.id] == {"online": False, "sockets": 0}

    await tabs[0].client.disconnect()

    async def two_left() -> bool:
        return (await messages.presence(ada.id))[ada.id]["sockets"] == 2

    await eventually(two_left)
    for tab in tabs[1:]:
        await tab.client.disconnect()

    async def offline() -> bool:
        return (await messages.presence(ada.id))[ada.id] == {"online": False, "sockets": 0}

    await eventually(offline)


@pytest.mark.gen_test(timeout=60)
async def test_everyone_hears_when_a_user_comes_online_and_leaves(api, sockets):
    watcher = await sockets.connect(
        await api.socket_token(await api.new_user("cyd")), events=("presence",)
    )
    ada = await api.new_user("ada")
    first_tab = await sockets.connect(await api.socket_token(ada))
    [event] = [e for e in await watcher.wait_for("presence") if e["user"]["_id"] == ada.id]
    assert event == {"user": {"_id": ada.id, "username": "ada"}, "online": True, "sockets": 1}

    # A second tab opening and closing changes nothing anyone is told...
    second_tab = await sockets.connect(await api.socket_token(ada))
    await second_tab.client.disconnect()
    # ...which a later user's arrival shows: events reach a socket in order.
    dan = await api.new_user("dan")
    await sockets.connect(await api.socket_token(dan))
    await eventually(lambda: presence_of(watcher, dan.id))
    assert presence_of(watcher, ada.id) == [(True, 1)]

    await first_tab.client.disconnect()
    await eventually(lambda: len(presence_of(watcher, ada.id)) == 2)
    assert presence_of(watcher, ada.id) == [(True, 1), (False, 0)]


@pytest.mark.gen_test(timeout=60)
async def test_tabs_opening_at_once_are_announced_once(api, sockets, registry):
    watcher = await sockets.connect(
        await api.socket_token(await api.new_user("cyd")), events=("presence",)
    )
    ada = await api.new_user("ada")
    tokens = [await api.socket_token(ada) for _ in range(4)]
    tabs = await asyncio.gather(*(sockets.connect(token) for token in tokens))
    await eventually(lambda: presence_of(watcher, ada.id))
    presence = await registry[keys.MESSAGE_CLIENT].presence(ada.id)
    assert presence == {ada.id: {"online": True, "sockets": 4}}
    await asyncio.gather(*(tab.client.disconnect() for tab in tabs))
    await eventually(lambda: len(presence_of(watcher, ada.id)) >= 2)
    dan = await api.new_user("dan")
    await sockets.connect(await api.socket_token(dan))
    await eventually(lambda: presence_of(watcher, dan.id))
    assert presence_of(watcher, ada.id) == [(True, 1), (False, 0)]


@pytest.mark.gen_test(timeout=60)
async def test_the_presence_endpoint(api: Api, sockets: Sockets):
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    await sockets.connect(await api.socket_token(ada))
    await sockets.connect(await api.socket_token(ada))

    # Any signed-in user may ask about anyone, themselves included; ids are case-blind.
    answer = await api.request(
        "GET", f"/api/v1/presence?users={ada.id.upper()},{bob.id},{ada.id}", token=bob.token
    )
    assert answer.status == 200, answer.body
    assert answer.body == {
        "presence": {
            ada.id: {"online": True, "sockets": 2},
            bob.id: {"online": False, "sockets": 0},
        }
    }
    assert answer.headers["Content-Type"].startswith("application/json")

    without_jwt = await api.request("GET", f"/api/v1/presence?users={ada.id}")
    assert (without_jwt.status, without_jwt.error_code) == (401, "authentication_required")
    bad_jwt = await api.request("GET", f"/api/v1/presence?users={ada.id}", token="x.y.z")
    assert (bad_jwt.status, bad_jwt.error_code) == (401, "invalid_token")

    too_many = ",".join([ada.id] * 101)
    for query in (
        "",
        "?users=",
        "?users=abc",
        f"?users={ada.id},",
        f"?users={ada.id}0",
        f"?users={ada.id[:-1]}g",
        f"?users={ada.id}&users={bob.id}",
        f"?users={ada.id}%20",
        f"?users={too_many}",
    ):
        refused = await api.request("GET", f"/api/v1/presence{query}", token=bob.token)
        assert (refused.status, refused.error_code) == (400, "validation_error"), query
        assert refused.body["error"]["field"] == "users"

    hundred = ",".join([ada.id] * 100)
    most = await api.request("GET", f"/api/v1/presence?users={hundred}", token=bob.token)
    assert most.status == 200
    assert list(most.body["presence"]) == [ada.id]


@pytest.mark.gen_test(timeout=60)
async def test_a_refused_socket_does_not_count(api, sockets, registry):
    ada = await api.new_user("ada")
    await sockets.refused("not-a-token")
    token = await api.socket_token(ada)
    await sockets.connect(token)
    await sockets.refused(token)  # used twice: refused
    presence = await registry[keys.MESSAGE_CLIENT].presence(ada.id)
    assert presence == {ada.id: {"online": True, "sockets": 1}}


@pytest.mark.parametrize("settings_overrides", [{"max_sockets_per_user": 2}])
@pytest.mark.gen_test(timeout=60)
async def test_concurrent_handshakes_of_one_user_stop_at_max_sockets_per_user(
    api: Api, sockets: Sockets, settings_overrides
):
    # Issue 20: the cap now reads the other processes' count first (a round trip to the
    # presence store when processes share one); this process's count and this socket's
    # place in it must still be taken in one step, or handshakes at once all pass.
    ada = await api.new_user("ada")
    tokens = [await api.socket_token(ada) for _ in range(12)]

    async def attempt(token: str) -> bool:
        try:
            await sockets.connect(token)
        except socketio.exceptions.ConnectionError:
            return False
        return True

    connected = await asyncio.gather(*(attempt(token) for token in tokens))
    assert sum(connected) == 2


@pytest.mark.parametrize("settings_overrides", [{"presence_requests_per_minute_per_user": 4}])
@pytest.mark.gen_test(timeout=30)
async def test_presence_requests_are_limited_per_user(api: Api, settings_overrides):
    # Issue 20: any number of presence requests, each up to 100 users, had no limit.
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    hundred = ",".join([bob.id] * 100)
    path = f"/api/v1/presence?users={hundred}"
    # A burst of half the per-minute figure, then 429 with Retry-After.
    for _ in range(2):
        assert (await api.request("GET", path, token=ada.token)).status == 200
    refused = await api.request("GET", path, token=ada.token)
    assert (refused.status, refused.error_code) == (429, "too_many_requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.body["error"]["retry_after"] == int(refused.headers["Retry-After"])
    # Per user: bob still asks.
    assert (await api.request("GET", path, token=bob.token)).status == 200
{%- if cookiecutter.message_queue == "redis" %}


@pytest.mark.gen_test(timeout=30)
async def test_a_presence_request_for_a_hundred_users_is_one_redis_round_trip(api: Api, settings):
    # Issue 20: one request for 100 users made 100 sequential Redis calls. Redis's
    # MONITOR lists every command it runs; this test's channel names its keys.
    ada = await api.new_user("ada")
    users = [await api.new_user() for _ in range(3)]
    ids = [user.id for user in users] * 34
    path = "/api/v1/presence?users=" + ",".join(ids[:100])
    assert (await api.request("GET", path, token=ada.token)).status == 200  # loads the script

    watcher = aioredis.Redis.from_url(settings.redis_url)
    sentinel = f"{settings.redis_channel}:sentinel"
    try:
        async with watcher.monitor() as monitor:
            answer = await api.request("GET", path, token=ada.token)
            await watcher.exists(sentinel)  # the end of what this test watches
            commands = []
            while sentinel not in (command := await monitor.next_command())["command"]:
                commands.append(command)
    finally:
        await watcher.aclose()
    assert answer.status == 200
    assert set(answer.body["presence"]) == {user.id for user in users}
    presence_calls = [
        command
        for command in commands
        if command.get("client_type") != "lua"
        and f"{settings.redis_channel}:presence" in command["command"]
    ]
    assert len(presence_calls) == 1, [command["command"][:80] for command in presence_calls]
{%- endif %}
