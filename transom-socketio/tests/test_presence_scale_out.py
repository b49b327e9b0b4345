"""Presence across processes (REDIS_URL): two app processes share one Redis,
and the sockets of a process that is killed stop counting within the documented bound
(3 x PRESENCE_HEARTBEAT_SECONDS)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
import socketio
from test_presence import eventually, presence_of
from test_scale_out import AppProcess, shared_environment, two_apps

from transom_socketio.testing.clients import Api, Sockets

HEARTBEAT_SECONDS = 1

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def environment(mongodb_uri: str) -> dict[str, str]:
    return {
        **shared_environment(mongodb_uri),
        "PRESENCE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        # The tests poll the endpoint until the counts settle.
        "PRESENCE_REQUESTS_PER_MINUTE_PER_USER": "0",
        # The presence event to every socket (off by default).
        "PRESENCE_EVENTS": "true",
    }


@pytest.fixture
def processes(environment: dict[str, str]) -> Iterator[list[AppProcess]]:
    with two_apps(environment) as started:
        yield started


async def presence(api: Api, token: str, *ids: str) -> dict[str, dict[str, object]]:
    answer = await api.request("GET", f"/api/v1/presence?users={','.join(ids)}", token=token)
    assert answer.status == 200, answer.body
    return answer.body["presence"]


@pytest.mark.gen_test(timeout=90)
async def test_presence_is_shared_and_a_killed_process_stops_counting(processes, http_client):
    process_a, process_b = processes
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    on_a, on_b = Sockets(process_a.url), Sockets(process_b.url)
    try:
        ada, bob, cyd = [await api_a.new_user(name) for name in ("ada", "bob", "cyd")]
        watcher = await on_a.connect(await api_a.socket_token(cyd), events=("presence",))

        # ada: one tab on each process; bob: one tab on B only. Both processes agree.
        await on_a.connect(await api_a.socket_token(ada))
        await on_b.connect(await api_b.socket_token(ada))
        await on_b.connect(await api_b.socket_token(bob))
        expected = {
            ada.id: {"online": True, "sockets": 2},
            bob.id: {"online": True, "sockets": 1},
        }
        for api in (api_a, api_b):
            assert await presence(api, cyd.token, ada.id, bob.id) == expected

        # The watcher on A heard each user come online once: ada's second socket
        # (on another process) was no transition, bob's socket on B was one.
        await eventually(lambda: presence_of(watcher, bob.id))
        assert presence_of(watcher, ada.id) == [(True, 1)]
        assert presence_of(watcher, bob.id) == [(True, 1)]

        # B dies without closing anything: its sockets stop counting within the bound.
        process_b.process.send_signal(signal.SIGKILL)
        process_b.process.wait(timeout=20)

        async def only_a_counts() -> bool:
            return await presence(api_a, cyd.token, ada.id, bob.id) == {
                ada.id: {"online": True, "sockets": 1},
                bob.id: {"online": False, "sockets": 0},
            }

        # The bound, plus a margin for a loaded machine.
        await eventually(only_a_counts, within=3 * HEARTBEAT_SECONDS + 10)
    finally:
        await on_a.close_all()
        await on_b.close_all()


@pytest.mark.gen_test(timeout=90)
async def test_the_last_socket_leaving_on_any_process_is_announced_once(processes, http_client):
    process_a, process_b = processes
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    on_a, on_b = Sockets(process_a.url), Sockets(process_b.url)
    try:
        ada, cyd = await api_a.new_user("ada"), await api_a.new_user("cyd")
        watcher = await on_b.connect(await api_b.socket_token(cyd), events=("presence",))
        tab_a = await on_a.connect(await api_a.socket_token(ada))
        tab_b = await on_b.connect(await api_b.socket_token(ada))
        await tab_a.client.disconnect()  # ada is still online on B: no event
        await tab_b.client.disconnect()  # her last socket: offline
        await eventually(lambda: len(presence_of(watcher, ada.id)) == 2)
        assert presence_of(watcher, ada.id) == [(True, 1), (False, 0)]
    finally:
        await on_a.close_all()
        await on_b.close_all()


@pytest.fixture
def capped_processes(environment: dict[str, str]) -> Iterator[list[AppProcess]]:
    with two_apps({**environment, "MAX_SOCKETS_PER_USER": "2"}) as started:
        yield started


@pytest.mark.gen_test(timeout=90)
async def test_max_sockets_per_user_holds_across_processes(capped_processes, http_client):
    # Issue 20: each process counted only its own sockets, so N processes let a user
    # hold N x MAX_SOCKETS_PER_USER. The handshake reads the count the presence store
    # keeps across processes.
    process_a, process_b = capped_processes
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    on_a, on_b = Sockets(process_a.url), Sockets(process_b.url)
    try:
        ada, bob = await api_a.new_user("ada"), await api_a.new_user("bob")
        await on_a.connect(await api_a.socket_token(ada))
        await on_b.connect(await api_b.socket_token(ada))
        for api, on in ((api_a, on_a), (api_b, on_b)):
            refused = await on.refused(await api.socket_token(ada))
            assert refused.connect_errors == [{"message": "INVALID_TOKEN"}]
        # Another user is not affected; a socket that leaves frees its place everywhere.
        await on_b.connect(await api_b.socket_token(bob))
        await on_b.opened[0].client.disconnect()

        async def one_more_fits() -> bool:
            token = await api_a.socket_token(ada)
            try:
                await on_a.connect(token)
            except socketio.exceptions.ConnectionError:  # the leaving one still counted
                return False
            return True

        await eventually(one_more_fits)

        # Handshakes at once on both processes: each process counts its own at once and
        # the other's once they are counted in Redis, so at most 2 x 2 connect
        # (SECURITY.md: the margin that remains).
        cyd = await api_a.new_user("cyd")
        tokens = [await api_a.socket_token(cyd) for _ in range(12)]

        async def attempt(on: Sockets, token: str) -> bool:
            try:
                await on.connect(token)
            except socketio.exceptions.ConnectionError:
                return False
            return True

        connected = await asyncio.gather(
            *(attempt(on_a if i % 2 else on_b, token) for i, token in enumerate(tokens))
        )
        assert 2 <= sum(connected) <= 4, sum(connected)
    finally:
        await on_a.close_all()
        await on_b.close_all()


@pytest.mark.gen_test(timeout=120)
async def test_a_user_moving_between_processes_within_the_grace_is_not_announced(
    processes, http_client
):
    """Leaving one process and coming back on the other within the grace period (3 s) is
    no change of state: the leaving mark is shared through Redis."""
    process_a, process_b = processes
    apis = [Api(http_client, process_a.url), Api(http_client, process_b.url)]
    on = [Sockets(process_a.url), Sockets(process_b.url)]
    try:
        ada, cyd = await apis[0].new_user("ada"), await apis[0].new_user("cyd")
        watcher = await on[0].connect(await apis[0].socket_token(cyd), events=("presence",))
        tab = await on[0].connect(await apis[0].socket_token(ada))
        for move in range(1, 21):
            await tab.client.disconnect()
            side = move % 2
            tab = await on[side].connect(await apis[side].socket_token(ada))
        await tab.client.disconnect()
        await eventually(lambda: presence_of(watcher, ada.id)[-1:] == [(False, 0)], within=30)
        events = presence_of(watcher, ada.id)
        # Online, then offline; a move slower than the grace (a very slow machine) adds a
        # pair, and the cap bounds those.
        assert len(events) <= 4, events
        assert all(online == (i % 2 == 0) for i, (online, _n) in enumerate(events)), events
    finally:
        await on[0].close_all()
        await on[1].close_all()
