"""Client events, ephemeral emits and socket counts across processes (REDIS_URL): two
app processes (``python -m example_app``) share one Redis channel, and this test
process plays a worker with no sockets (``write_only_message_client``)."""

from __future__ import annotations

import asyncio

import pytest
from example_app.settings import Settings
from test_presence import eventually
from test_scale_out import cluster  # noqa: F401 (the fixture)

from transom_socketio.config import load_settings
from transom_socketio.realtime.presence import OnlineCounts
from transom_socketio.realtime.redis_queue import close_write_only, write_only_message_client
from transom_socketio.testing.clients import Api, Sockets

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")


@pytest.mark.gen_test(timeout=90)
async def test_counts_ephemeral_emits_and_client_events_span_the_processes(
    cluster,  # noqa: F811 (the fixture)
    http_client,
    monkeypatch,
):
    process_a, process_b, env = cluster
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    on_a, on_b = Sockets(process_a.url), Sockets(process_b.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    worker = write_only_message_client(load_settings(env_file=None, settings_class=Settings))
    try:
        ada, bob, cyd = [await api_a.new_user(name) for name in ("ada", "bob", "cyd")]
        events = ("tick", "typing")
        ada_a = await on_a.connect(await api_a.socket_token(ada), events=events)
        ada_b = await on_b.connect(await api_b.socket_token(ada), events=events)
        bob_b = await on_b.connect(await api_b.socket_token(bob), events=events)

        # Counted across both processes, from a third that holds no socket.
        assert await worker.socket_counts([ada.id, bob.id, cyd.id]) == {
            ada.id: 2,
            bob.id: 1,
            cyd.id: 0,
        }
        assert await worker.online_counts() == OnlineCounts(users=2, sockets=3)

        # An ephemeral emit from the worker reaches the sockets of both processes.
        await worker.emitToUsers(ada.id, "tick", {"n": "to ada"}, ephemeral=True)
        await worker.emitToEveryone("tick", {"n": "to all"}, ephemeral=True)
        for socket in (ada_a, ada_b):
            assert await socket.wait_for("tick", 2) == [{"n": "to ada"}, {"n": "to all"}]
        assert await bob_b.wait_for("tick") == [{"n": "to all"}]
        assert [s.positions for s in (ada_a, ada_b, bob_b)] == [[], [], []]

        # A client event handled on A reaches its addressee on B (example_app's typing).
        ack = await ada_a.client.call("typing", {"to": bob.id}, timeout=10)
        assert ack == {"ok": True}
        assert await bob_b.wait_for("typing") == [
            {"from": {"_id": ada.id, "username": "ada"}, "typing": True}
        ]
        assert bob_b.positions == []

        await ada_b.client.disconnect()
        await bob_b.client.disconnect()

        async def settled() -> bool:
            counts = await worker.socket_counts([ada.id, bob.id])
            return counts == {ada.id: 1, bob.id: 0} and await worker.online_counts() == (1, 1)

        await eventually(settled)
        await asyncio.sleep(0)
    finally:
        await close_write_only(worker)
        await on_a.close_all()
        await on_b.close_all()
