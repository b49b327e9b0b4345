"""Recovery of missed messages (README, "Recovering missed messages").

A real python-socketio client that reconnects by itself (``RecoveringClient``, as
the README shows) loses its transport; messages emitted while it is away, and while
its missed messages are being replayed, all arrive exactly once and in order, after
one ``recovery`` event. Positions that cannot be recovered from never refuse the
connection: they give ``complete: false`` and no replay.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Iterator

import pytest
import tornado.web

from transom_socketio.testing.clients import Api, RecoveringClient, Sockets

GAP = 1000  # emitted at once while the socket is away: a replay long enough to overlap


async def drop_transports(app: tornado.web.Application) -> None:
    """Close every socket at the transport (no Socket.IO DISCONNECT, no engine.io CLOSE),
    as a network cut or a restarting proxy would; clients reconnect by themselves."""
    await app.settings["services"].socket_server.close_transports()


async def away(app: tornado.web.Application, client: RecoveringClient) -> None:
    """Drop the client's transport and keep it from reconnecting until ``may_connect``."""
    client.may_connect.clear()
    await drop_transports(app)
    await asyncio.wait_for(client.disconnected.wait(), 10)


@pytest.fixture
def clients(io_loop) -> Iterator[list[RecoveringClient]]:
    opened: list[RecoveringClient] = []
    yield opened

    async def close_all() -> None:
        for client in opened:
            await client.close()

    io_loop.run_sync(close_all)


async def recovering(clients: list[RecoveringClient], api: Api, base_url: str) -> RecoveringClient:
    user = await api.new_user()
    client = RecoveringClient(api, user, base_url)
    clients.append(client)
    await client.connect()
    # Its first recovery (from the token's position) is over before a test drops it.
    await client.wait_until(lambda: len(client.recoveries()) == 1)
    return client


@pytest.mark.gen_test(timeout=120)
async def test_a_dropped_socket_gets_the_gap_and_what_is_emitted_during_the_replay_once_in_order(
    app, api, base_url, registry, clients, report
):
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    ticks = 0
    one_at_a_time = asyncio.Lock()  # the loop and the recovery handler both tick

    async def tick() -> None:
        nonlocal ticks
        async with one_at_a_time:
            await msg.emitToUsers(client.user.id, "tick", {"n": ticks})
            ticks += 1

    for _ in range(5):
        await tick()
    await client.wait_until(lambda: len(client.payloads()) == 5)
    assert client.recoveries() == [{"complete": True, "count": 0}]  # from the token's position

    # Emit while it is away, then while it reconnects and its replay arrives. The loop
    # below may not see the replay in flight (on a busy machine it can arrive between two
    # of its steps), so the client also emits one when it handles the recovery event,
    # before the replayed messages it announces: always during the replay.
    in_gap = during_replay = 0

    async def on_recovery(summary: dict) -> None:
        nonlocal during_replay
        await client._on_recovery(summary)
        if len(client.recoveries()) == 2 and len(client.payloads()) < ticks:
            during_replay += 1
            await tick()

    client.client.on("recovery", on_recovery)
    await drop_transports(app)
    await asyncio.wait_for(client.disconnected.wait(), 10)

    def catching_up() -> bool:
        return len(client.recoveries()) < 2 or len(client.payloads()) < ticks

    while catching_up() and during_replay < 100:
        if client.connects == 1:
            in_gap += 1
        elif client.recoveries()[1:] and len(client.payloads()) < ticks:
            during_replay += 1
        await tick()
        if in_gap >= GAP:
            await asyncio.sleep(0.001)
    for _ in range(3):
        await tick()
    await client.wait_until(lambda: len(client.payloads()) == ticks)

    assert [payload["n"] for payload in client.payloads()] == list(range(ticks))
    assert client.connects == 2
    second = client.arrivals.index(("recovery", client.recoveries()[1]))
    assert client.arrivals[second - 1] == ("tick", {"n": 4}), "recovery comes first"
    recovered = client.recoveries()[1]
    assert recovered["complete"] is True
    # Messages emitted in the gap were replayed (all but those emitted between the
    # server's read of the history and the client's handling of its CONNECT: held).
    assert recovered["count"] > 0 and in_gap > 0
    assert during_replay > 0, "no message was emitted while the replay was arriving"
    report(
        f"{in_gap} messages emitted in the gap, {during_replay} while the replay "
        f"({recovered['count']} messages) arrived: {ticks} received once each, in order"
    )


@pytest.mark.gen_test(timeout=60)
async def test_a_socket_that_received_nothing_recovers_from_its_tokens_position(
    app, api, base_url, registry, clients
):
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    client = RecoveringClient(api, user, base_url)
    clients.append(client)
    # The token (and its position) comes first; a message is emitted before the
    # handshake, and everyone's announcement too: both are recovered.
    client.client.on("news", client._recorder("news"))
    auth = await client._auth()
    await msg.emitToUsers(user.id, "tick", {"n": 0})
    await msg.emitToEveryone("news", {"all": True})
    await client.client.connect(base_url, auth=auth, transports=["websocket"], wait_timeout=10)
    await client.wait_until(lambda: len(client.arrivals) == 3)
    assert client.arrivals == [
        ("recovery", {"complete": True, "count": 2}),
        ("tick", {"n": 0}),
        ("news", {"all": True}),
    ]


@pytest.mark.gen_test(timeout=60)
async def test_without_a_position_the_socket_starts_live_and_each_message_carries_one(
    api, registry, sockets: Sockets
):
    user = await api.new_user()
    socket = await sockets.connect(await api.socket_token(user), events=("tick", "recovery"))
    msg = registry["transomMsgClient"]
    for n in range(3):
        await msg.emitToUsers(user.id, "tick", {"n": n})
    assert await socket.wait_for("tick", 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert socket.received("recovery") == []
    assert len(set(socket.positions)) == 3, socket.positions


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize(
    "position",
    [
        *("", "nope", "9" * 100, 42, ["0-0"], {"$gt": ""}),
        # The history's own ids, which positions were before issue 20: stream ids, the
        # local history's epoch and sequence.
        "99999999999999-0",
        "1-0",
        "0-0",
        "ffffffffffffffff-1",
        # Of the shape of a position, not written with this deployment's key.
        "A" * 22,
        "otRmK-yDrAlrU8Y51d4DjQ",
    ],
)
async def test_a_position_that_cannot_be_recovered_from_gives_complete_false_and_no_replay(
    api, registry, sockets: Sockets, position
):
    user = await api.new_user()
    msg = registry["transomMsgClient"]
    # Received by another tab first: delivered.
    tab = await sockets.connect(await api.socket_token(user), events=("tick",))
    await msg.emitToUsers(user.id, "tick", {"n": 0})
    await tab.wait_for("tick")
    auth = {"token": await api.socket_token(user), "position": position}
    socket = await sockets.connect(auth=auth, events=("tick", "recovery"))
    assert await socket.wait_for("recovery") == [{"complete": False, "count": 0}]
    await msg.emitToUsers(user.id, "tick", {"n": 1})
    assert await socket.wait_for("tick") == [{"n": 1}]  # live from here


def as_number(position: str) -> int:
    """A position's 16 bytes as one number (what a counter or clock would show in)."""
    return int.from_bytes(base64.urlsafe_b64decode(position + "=="))


@pytest.mark.gen_test(timeout=60)
async def test_positions_do_not_tell_how_many_messages_others_received(
    api, registry, sockets: Sockets
):
    """Between two messages to one user, the deployment sends N private messages to
    another; the positions the first user receives must not reveal N. They were a
    deployment-wide counter or clock (issue 20): ordered, and N + 1 apart."""
    msg = registry["transomMsgClient"]
    user, other = await api.new_user(), await api.new_user()
    socket = await sockets.connect(await api.socket_token(user), events=("tick",))
    between = [0, 0, 1, 5, 50, 0, 200, 1, 0, 20, 3, 0]
    await msg.emitToUsers(user.id, "tick", {"n": 0})
    for n, others in enumerate(between, start=1):
        for _ in range(others):
            await msg.emitToUsers(other.id, "tick", {"private": True})
        await msg.emitToUsers(user.id, "tick", {"n": n})
    await socket.wait_for("tick", len(between) + 1)
    positions = socket.positions
    assert len(set(positions)) == len(positions) == len(between) + 1
    assert all(len(position) == 22 for position in positions)
    numbers = [as_number(position) for position in positions]
    # Not ordered (either way), and never close: consecutive positions are as far apart
    # as two random 128-bit numbers, whether 0 or 200 messages lay between them.
    assert positions not in (sorted(positions), sorted(positions, reverse=True))
    assert numbers not in (sorted(numbers), sorted(numbers, reverse=True))
    assert all(abs(b - a) > 2**64 for a, b in itertools.pairwise(numbers))
    assert all(p[:4] != q[:4] for p, q in itertools.pairwise(positions))


@pytest.mark.gen_test(timeout=60)
async def test_an_altered_position_is_unknown(api, registry, sockets: Sockets):
    user = await api.new_user()
    msg = registry["transomMsgClient"]
    first = await sockets.connect(await api.socket_token(user), events=("tick",))
    await msg.emitToUsers(user.id, "tick", {"n": 0})
    await first.wait_for("tick")
    position = first.positions[0]
    altered = position[:10] + ("B" if position[10] != "B" else "C") + position[11:]
    await msg.emitToUsers(user.id, "tick", {"n": 1})
    await first.wait_for("tick", 2)  # delivered: in the history a recovery reads
    auth = {"token": await api.socket_token(user), "position": altered}
    socket = await sockets.connect(auth=auth, events=("tick", "recovery"))
    assert await socket.wait_for("recovery") == [{"complete": False, "count": 0}]
    auth = {"token": await api.socket_token(user), "position": position}
    socket = await sockets.connect(auth=auth, events=("tick", "recovery"))
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 1}]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_max_messages": 10}])
async def test_past_the_window_recovery_is_incomplete_and_the_socket_goes_on_live(
    app, api, base_url, registry, clients
):
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    await msg.emitToUsers(client.user.id, "tick", {"n": 0})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    await away(app, client)
    for n in range(1, 21):  # twice what is kept
        await msg.emitToUsers(client.user.id, "tick", {"n": n})
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    await msg.emitToUsers(client.user.id, "tick", {"n": 21})
    await client.wait_until(lambda: len(client.payloads()) == 2)
    assert [payload["n"] for payload in client.payloads()] == [0, 21]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_retention_seconds": 1}])
async def test_a_message_older_than_the_retention_is_not_recovered_even_if_still_kept(
    app, api, base_url, registry, clients
):
    """RECOVERY_RETENTION_SECONDS is how long a message stays recoverable, whether or
    not a later emit has trimmed it yet (with Redis, its room's index may be gone)."""
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    await msg.emitToUsers(client.user.id, "tick", {"n": 0})
    await client.wait_until(lambda: len(client.payloads()) == 1)
    await away(app, client)
    await msg.emitToUsers(client.user.id, "tick", {"n": 1})
    await asyncio.sleep(1.5)  # nothing emitted since: nothing trimmed it
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    assert client.recoveries()[1] == {"complete": False, "count": 0}
    assert [payload["n"] for payload in client.payloads()] == [0]


@pytest.mark.gen_test(timeout=60)
async def test_other_users_messages_are_not_replayed(app, api, base_url, registry, clients):
    msg = registry["transomMsgClient"]
    client = await recovering(clients, api, base_url)
    other = await api.new_user()
    await away(app, client)
    await msg.emitToUsers(other.id, "tick", {"n": "not yours"})
    await msg.emitToUsers(client.user.id, "tick", {"n": "yours"})
    client.may_connect.set()
    await client.wait_until(lambda: len(client.recoveries()) == 2)
    await client.wait_until(lambda: len(client.payloads()) == 1)
    assert client.recoveries()[1] == {"complete": True, "count": 1}
    assert client.payloads() == [{"n": "yours"}]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recovery_enabled": False}])
async def test_with_recovery_off_messages_carry_no_position_and_none_is_replayed(
    api, registry, sockets: Sockets
):
    user = await api.new_user()
    token = await api.request("POST", "/api/v1/user/sockettoken", token=user.token)
    assert token.body["position"] is None
    auth = {"token": token.body["token"], "position": "0-0"}
    socket = await sockets.connect(auth=auth, events=("tick", "recovery"))
    await registry["transomMsgClient"].emitToUsers(user.id, "tick", {"n": 0})
    assert await socket.wait_for("tick") == [{"n": 0}]
    assert socket.positions == []
    assert socket.received("recovery") == []
