"""The fast fan-out path (realtime/accel/fanout.py) delivers exactly what the normal path does.

Every message must arrive exactly once and in order on every socket, whichever path
wrote it, including when both paths interleave on one socket, for sockets on
long-polling or upgraded from it, for every frame-length encoding, and for rooms
written in several chunks.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from engineio import packet as eio_packet

from transom_socketio import registry as keys
from transom_socketio.realtime.accel.fanout import websocket_text_frame
from transom_socketio.testing.clients import requires_accel

pytestmark = requires_accel


@pytest.fixture
def settings_overrides():
    # The fast path, whatever FAST_FANOUT says. Short pings: long-polling clients in
    # these tests then close quickly.
    return {"fast_fanout": True, "socketio_ping_interval": 1, "socketio_ping_timeout": 2}


@pytest.fixture
def messages(registry):
    return registry[keys.MESSAGE_CLIENT]


@pytest.fixture
def manager(registry):
    return registry[keys.SOCKET_SERVER].manager


async def user_sockets(api, sockets, count, name="fan"):
    user = await api.new_user(name)
    return user, [
        await sockets.connect(await api.socket_token(user), events=("seq",)) for _ in range(count)
    ]


def test_frames_use_each_length_encoding():
    for size, header in ((0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)):
        frame = websocket_text_frame(b"x" * size)
        assert len(frame) == size + header
        assert frame[0] == 0x81  # FIN + text, no RSV bits: uncompressed
        assert frame[1] & 0x80 == 0  # server frames are not masked


@pytest.mark.gen_test(timeout=30)
async def test_interleaved_fast_and_normal_emits_keep_order(api, sockets, messages, manager):
    _user, clients = await user_sockets(api, sockets, 4)
    for number in range(300):
        normal = number % 3 == 0  # every third emit takes the normal path
        manager.fast_fanout = not normal
        await messages.emitToEveryone("seq", number)
        if normal:
            # Delivered before the switch flips back (across processes, the history's
            # reader delivers after the emit returns).
            for client in clients:
                await client.wait_for("seq", number + 1, within=10)
        if number % 10 == 9:
            await asyncio.sleep(0.005)  # let queued packets drain, so both paths are taken
    for client in clients:
        assert await client.wait_for("seq", 300, within=10) == list(range(300))
    assert manager.delivered_fast > 0 and manager.delivered_normal >= 100 * 4


@pytest.mark.gen_test(timeout=30)
async def test_bursts_without_awaiting_deliver_each_message_once_in_order(api, sockets, messages):
    _user, clients = await user_sockets(api, sockets, 3)
    await asyncio.gather(*(messages.emitToEveryone("seq", number) for number in range(200)))
    for client in clients:
        received = await client.wait_for("seq", 200, within=10)
        assert sorted(received) == list(range(200))  # concurrent emits: each exactly once
    # Sequential emits keep their order.
    for number in range(200, 400):
        await messages.emitToEveryone("seq", number)
    for client in clients:
        assert (await client.wait_for("seq", 400, within=10))[200:] == list(range(200, 400))


@pytest.mark.gen_test(timeout=30)
async def test_payloads_of_every_frame_length_arrive_intact(api, sockets, messages):
    _user, [client] = await user_sockets(api, sockets, 1)
    sizes = [0, 100, 126, 1000, 65_000, 70_000, 300_000]
    for size in sizes:
        await messages.emitToEveryone("seq", {"size": size, "text": "é" * size})
    received = await client.wait_for("seq", len(sizes), within=10)
    assert [(p["size"], len(p["text"])) for p in received] == [(s, s) for s in sizes]
    assert all(set(p["text"]) <= {"é"} for p in received)


@pytest.mark.gen_test(timeout=30)
async def test_large_rooms_are_written_in_chunks(api, sockets, messages, manager):
    manager.chunk_size = 2
    users = [await user_sockets(api, sockets, 2, name=f"chunk{n}") for n in range(4)]
    for number in range(20):
        await messages.emitToEveryone("seq", number)
    await messages.emitToUsers([user for user, _ in users], "seq", 20)
    for _user, clients in users:
        for client in clients:
            assert await client.wait_for("seq", 21) == list(range(21))


@pytest.mark.gen_test(timeout=60)
async def test_polling_and_upgraded_sockets_get_every_message_in_order(
    api, sockets, messages, manager, base_url
):
    user = await api.new_user("poller")
    polling = sockets.new("seq")
    await polling.client.connect(
        base_url, auth={"token": await api.socket_token(user)}, transports=["polling"]
    )
    upgraded = sockets.new("seq")
    await upgraded.client.connect(base_url, auth={"token": await api.socket_token(user)})
    websocket = await sockets.connect(await api.socket_token(user), events=("seq",))
    for _ in range(100):  # let the upgrade finish
        if upgraded.client.transport() == "websocket" and manager.websocket_handlers:
            break
        await asyncio.sleep(0.05)
    assert upgraded.client.transport() == "websocket"
    assert len(manager.websocket_handlers) == 1, "the upgraded socket's handler is known"
    assert polling.client.transport() == "polling"
    for number in range(100):
        await messages.emitToUsers(user.id, "seq", number)
    for client in (polling, upgraded, websocket):
        assert await client.wait_for("seq", 100, within=15) == list(range(100))
    # The WebSocket sockets were written directly; the polling one went through its queue.
    assert manager.delivered_fast >= 2 * 90
    assert manager.delivered_normal >= 100
    for client in (polling, upgraded):
        await client.client.disconnect()
    for _ in range(100):
        if not manager.websocket_handlers:
            break
        await asyncio.sleep(0.05)
    assert manager.websocket_handlers == {}, "closed handlers are forgotten"


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_with_a_packet_queued_gets_the_next_ones_behind_it_in_one_pass(
    api, sockets, manager, registry
):
    user, clients = await user_sockets(api, sockets, 3, name="queued")
    sio = registry[keys.SOCKET_SERVER]
    [busy_sid, *_] = [eio_sid for _, eio_sid in manager.get_participants("/", f"user:{user.id}")]
    # A packet engine.io has queued for one socket and not written yet (a ping, mostly).
    sio.eio.sockets[busy_sid].queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, '2["seq",-1]'))
    fast, normal = manager.delivered_fast, manager.delivered_normal
    yielded: list[bool] = []
    asyncio.get_running_loop().call_soon(yielded.append, True)
    for number in range(10):
        await manager.deliver("seq", (number,), "/", room="everyone")
    assert yielded == [], "the burst ran in one event-loop pass"
    assert manager.delivered_fast - fast == 2 * 10, "the other sockets were written directly"
    assert manager.delivered_normal - normal == 10
    for client in clients:
        busy = client.client.eio.sid == busy_sid
        expected = [-1, *range(10)] if busy else list(range(10))
        assert await client.wait_for("seq", len(expected)) == expected


@pytest.mark.gen_test(timeout=30)
async def test_the_transports_remembered_for_sockets_that_leave_are_forgotten(
    api, sockets, messages, manager
):
    _user, clients = await user_sockets(api, sockets, 3, name="leaver")
    await messages.emitToEveryone("seq", 0)
    for client in clients:
        assert await client.wait_for("seq", 1) == [0]
    assert len(manager._targets) == 3, "each socket's stream is found once, then remembered"
    await clients[0].client.disconnect()
    for _ in range(100):
        if len(manager._targets) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(manager._targets) == 2, "a socket that disconnects is forgotten"
    await messages.emitToEveryone("seq", 1)
    for client in clients[1:]:
        assert await client.wait_for("seq", 2) == [0, 1]
    assert clients[0].received("seq") == [0]


@pytest.mark.gen_test(timeout=30)
async def test_a_broken_connection_does_not_stop_the_others(api, sockets, messages, registry):
    victim, [victim_socket] = await user_sockets(api, sockets, 1, name="victim")
    _user, clients = await user_sockets(api, sockets, 3)
    sio = registry[keys.SOCKET_SERVER]
    [(_sid, eio_sid)] = sio.manager.get_participants("/", f"user:{victim.id}")
    # The victim's TCP connection dies under the server, without a close handshake.
    sio.environ[eio_sid]["tornado.handler"].ws_connection.stream.socket.shutdown(socket.SHUT_RDWR)
    for number in range(50):
        await messages.emitToEveryone("seq", number)
    for client in clients:
        assert await client.wait_for("seq", 50) == list(range(50))
    for _ in range(100):
        if not list(sio.manager.get_participants("/", f"user:{victim.id}")):
            break
        await asyncio.sleep(0.05)
    assert not list(sio.manager.get_participants("/", f"user:{victim.id}")), "it is let go"
    assert victim_socket.received("seq") == []


def rooms_by_scan(manager, sid):
    """python-socketio's own way to find a socket's rooms: scan every room."""
    return {room for room, members in manager.rooms.get("/", {}).items() if sid in members}


@pytest.mark.gen_test(timeout=30)
async def test_the_room_index_follows_connects_leaves_and_disconnects(api, sockets, manager):
    ada, ada_tabs = await user_sockets(api, sockets, 3, name="indexed")
    sids = [sid for sid, _ in manager.get_participants("/", f"user:{ada.id}")]
    assert len(sids) == 3
    await manager.enter_room(sids[0], "/", "extra")
    await manager.leave_room(sids[1], "/", "everyone")
    for sid in sids:
        assert set(manager.get_rooms(sid, "/")) | {None} == rooms_by_scan(manager, sid)
    await ada_tabs[0].client.disconnect()
    for _ in range(100):
        if rooms_by_scan(manager, sids[0]) == set():
            break
        await asyncio.sleep(0.02)
    assert rooms_by_scan(manager, sids[0]) == set(), "a disconnected socket is in no room"
    assert "extra" not in manager.rooms["/"], "a room left empty is removed"
    assert manager.get_rooms(sids[0], "/") == []
    for sid in sids[1:]:
        assert set(manager.get_rooms(sid, "/")) | {None} == rooms_by_scan(manager, sid)
