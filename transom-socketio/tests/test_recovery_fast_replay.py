"""A replay written a chunk at a time (FAST_FANOUT, ``realtime/accel/replay.py``).

With the fast path, a recovering socket's missed messages leave in one write per chunk,
their frames built once and kept by history id for the next socket that recovers the
same entries (a reconnect storm). What a client receives must not change: the same
messages, in the same order, with the same positions, as engine.io's path gives; and a
kept frame must never outlive an edit or a retraction of its message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from transom_socketio.realtime.history import REPLAY_CHUNK
from transom_socketio.testing.clients import Api, SocketClient, Sockets, User

MISSED = 2 * REPLAY_CHUNK + 50  # three chunks


async def position_before(api: Api, user: User) -> str:
    """A position from before anything is emitted to ``user`` (a socket token's)."""
    answer = await api.request("POST", "/api/v1/user/sockettoken", token=user.token)
    assert answer.status == 200, answer.body
    return str(answer.body["position"])


async def recover(
    api: Api, sockets: Sockets, user: User, position: str, count: int, event: str = "tick"
) -> SocketClient:
    auth = {"token": await api.socket_token(user), "position": position}
    socket = await sockets.connect(auth=auth, events=("recovery", event))
    assert await socket.wait_for("recovery") == [{"complete": True, "count": count}]
    if count:
        await socket.wait_for(event, count, within=30)
    return socket


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings_overrides", [{"fast_fanout": True}, {"fast_fanout": False}])
async def test_a_replay_of_several_chunks_arrives_whole_in_order_on_either_path(
    app, api, registry, sockets: Sockets, settings_overrides: dict[str, Any]
):
    manager = app.settings["services"].socket_server.manager
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    position = await position_before(api, user)
    for n in range(MISSED):
        await msg.emitToUsers(user.id, "tick", {"n": n})
    fast_before = manager.delivered_fast

    first = await recover(api, sockets, user, position, MISSED)
    second = await recover(api, sockets, user, position, MISSED)

    for socket in (first, second):
        assert [payload["n"] for payload in socket.received("tick")] == list(range(MISSED))
        assert len(set(socket.positions)) == MISSED  # each message with its own position
    # The same entries, the same positions, for both sockets (the second one's frames
    # were kept from the first's replay on the fast path).
    assert first.positions == second.positions
    written_directly = manager.delivered_fast - fast_before
    if settings_overrides["fast_fanout"]:
        assert written_directly == 2 * MISSED
    else:
        assert written_directly == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_kept_frame_never_outlives_an_edit_or_a_retraction(api, registry, sockets):
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    position = await position_before(api, user)
    await msg.emitToUsers(user.id, "news", {"text": "draft"}, key="news:1")
    await msg.emitToUsers(user.id, "news", {"text": "doomed"}, key="news:2")
    await msg.emitToUsers(user.id, "news", {"text": "plain"})

    before = await recover(api, sockets, user, position, 3, "news")
    assert before.received("news") == [{"text": "draft"}, {"text": "doomed"}, {"text": "plain"}]

    await msg.replace("news:1", {"text": "final"})
    await msg.retract("news:2")
    after = await recover(api, sockets, user, position, 2, "news")
    assert after.received("news") == [{"text": "final"}, {"text": "plain"}]
    # The unedited message kept its place and its position.
    assert after.positions[-1] == before.positions[-1]


@pytest.mark.gen_test(timeout=120)
async def test_many_sockets_recovering_at_once_each_get_everything_once(
    api, registry, sockets: Sockets
):
    """A small storm: every socket of ten users recovers the same messages at once."""
    msg = registry["transomMsgClient"]
    users = [await api.new_user() for _ in range(10)]
    positions = [await position_before(api, user) for user in users]
    for n in range(REPLAY_CHUNK + 10):
        await msg.emitToUsers([user.id for user in users], "tick", {"n": n})
    recovered = await asyncio.gather(
        *(
            recover(api, sockets, user, position, REPLAY_CHUNK + 10)
            for user, position in zip(users, positions, strict=True)
        )
    )
    for socket in recovered:
        assert [payload["n"] for payload in socket.received("tick")] == list(
            range(REPLAY_CHUNK + 10)
        )
