"""Recovery across processes (REDIS_URL): the history is one Redis stream.

A user's socket on process A goes away; messages are posted through A and B at the
same time, before and while the user reconnects, to B this time, with the last
position it received. It gets every message exactly once, in the order that a socket
which stayed connected on A saw them. Positions are enciphered with a key both
processes derive from the JWT_SECRET they share: one process reads the other's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from test_scale_out import AppProcess, shared_environment, two_apps

from transom_socketio.testing.clients import Api, RecoveringClient, Sockets

PER_PROCESS = 60

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.fixture
def deployment_environment() -> dict[str, str]:
    """What a test's deployment sets besides the shared environment (a test parametrizes
    it to set its own)."""
    return {"WRITES_PER_MINUTE_PER_USER": "0"}


@pytest.fixture
def processes(
    mongodb_uri: str, deployment_environment: dict[str, str]
) -> Iterator[list[AppProcess]]:
    with two_apps({**shared_environment(mongodb_uri), **deployment_environment}) as started:
        yield started


@pytest.mark.gen_test(timeout=120)
async def test_a_socket_that_comes_back_on_the_other_process_recovers_in_order(
    processes, http_client, report
):
    process_a, process_b = processes
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    watchers = Sockets(process_a.url)
    ada = await api_a.new_user("ada")
    bob = await api_b.new_user("bob")
    watcher = await watchers.connect(await api_a.socket_token(ada))
    first = RecoveringClient(api_a, ada, process_a.url, events=("message",))
    second = RecoveringClient(api_b, ada, process_b.url, events=("message",))
    try:
        await first.connect()

        async def post(api: Api, label: str, count: int) -> None:
            for n in range(count):
                body = {"text": f"{label}{n}", "to": ada.id}
                answer = await api.request("POST", "/api/v1/db/message", body, token=bob.token)
                assert answer.status == 201, answer.body

        await post(api_a, "early", 3)
        await first.wait_until(lambda: len(first.payloads("message")) == 3)
        await first.close()  # gone; the next messages are posted through both processes

        posting = asyncio.gather(post(api_a, "a", PER_PROCESS), post(api_b, "b", PER_PROCESS))
        await asyncio.sleep(0.2)
        second.position = first.position  # what the page kept across the reconnection
        await second.connect()  # while both processes are still posting
        await posting
        total = 3 + 2 * PER_PROCESS
        await watcher.wait_for("message", total, within=30)
        await second.wait_until(lambda: len(second.payloads("message")) == total - 3, 30)

        seen_live = [message["text"] for message in watcher.received("message")]
        seen_by_ada = [m["text"] for m in first.payloads("message") + second.payloads("message")]
        assert seen_by_ada == seen_live
        assert len(set(seen_by_ada)) == total
        assert [m for m in seen_live if m.startswith("a")] == [f"a{n}" for n in range(PER_PROCESS)]
        assert [m for m in seen_live if m.startswith("b")] == [f"b{n}" for n in range(PER_PROCESS)]
        assert len(set(watcher.positions)) == total
        # The same message has the same position on both processes.
        assert second.position == watcher.positions[-1]
        recovered = second.recoveries()
        assert len(recovered) == 1 and recovered[0]["complete"] is True
        assert second.arrivals[0][0] == "recovery"
        report(
            f"{2 * PER_PROCESS} messages posted through two processes at once; reconnected "
            f"to the other process: {recovered[0]['count']} replayed, the rest live, "
            f"same order as a socket that stayed"
        )
    finally:
        await first.close()
        await second.close()
        await watchers.close_all()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("deployment_environment", [{"RECOVERIES_PER_MINUTE_PER_USER": "4"}])
async def test_a_users_recovery_rate_holds_across_processes(processes, http_client):
    """RECOVERIES_PER_MINUTE_PER_USER=4 allows bursts of 2 in the whole deployment, not in
    each process: a user who spent them on one process is refused on the other, which
    had counted none. (Each recovery costs the Redis every process shares.) Another
    user's recovery there is not affected."""
    process_a, process_b = processes
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    sockets_a, sockets_b = Sockets(process_a.url), Sockets(process_b.url)
    try:
        ada, bob = await api_a.new_user("ada"), await api_a.new_user("bob")
        token = await api_a.request("POST", "/api/v1/user/sockettoken", token=ada.token)
        start = token.body["position"]

        async def recover(api: Api, sockets: Sockets, user) -> list[dict]:
            auth = {"token": await api.socket_token(user), "position": start}
            socket = await sockets.connect(auth=auth, events=("recovery",))
            return await socket.wait_for("recovery")

        assert await recover(api_a, sockets_a, ada) == [{"complete": True, "count": 0}]
        assert await recover(api_a, sockets_a, ada) == [{"complete": True, "count": 0}]
        assert await recover(api_b, sockets_b, ada) == [{"complete": False, "count": 0}]
        assert await recover(api_b, sockets_b, bob) == [{"complete": True, "count": 0}]
    finally:
        await sockets_a.close_all()
        await sockets_b.close_all()
