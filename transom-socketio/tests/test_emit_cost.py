"""The emit path's shortcuts (issue 23: the fixed cost of an emit) change nothing a caller
or a client sees.

- the message client remembers the rooms of id strings and channel names it checked:
  the same rooms, in the same order, and the same errors as checking every time;
- the fast path encodes a packet itself (one JSON encoder, no binary scan): the same
  bytes as python-socketio's packet, and python-socketio's path for binary payloads;
- the fast path's own participant lookup and ``skip_sid`` handling: the same sockets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pytest
from bson import ObjectId
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from transom_socketio import jsonutil
from transom_socketio import registry as keys
from transom_socketio.metrics import Metrics
from transom_socketio.realtime import message_client
from transom_socketio.realtime.channels import Channels, channel_room
from transom_socketio.realtime.history import PositionMeta
from transom_socketio.realtime.message_client import MessageClient, user_ids_of
from transom_socketio.realtime.rooms import user_room
from transom_socketio.testing.clients import requires_accel

ADA = "5f1d7c3a9b2e4d6f8a0c1e2b"


class UserObject:
    def __init__(self, value: object) -> None:
        self._id = value


def bare_client() -> MessageClient:
    return MessageClient(None, Metrics(), None)  # type: ignore[arg-type]


USER_FORMS = [
    ADA,
    [ADA],
    [ADA, ADA.upper(), ObjectId(ADA), {"_id": ADA}, {"id": ObjectId(ADA)}],
    [f"{n:024x}" for n in range(50)] + [f"{n:024x}" for n in range(49, -1, -1)],
    (f"{n:024x}" for n in range(5)),
    ("aaaaaaaaaaaaaaaaaaaaaaaa", "BBBBBBBBBBBBBBBBBBBBBBBB"),
    [UserObject(ADA), UserObject(ObjectId()), {"_id": ADA}, ADA],
    ObjectId(ADA),
    {"_id": ADA},
    [],
]


@pytest.mark.parametrize("users", USER_FORMS, ids=range(len(USER_FORMS)))
def test_remembered_user_rooms_are_the_rooms_of_the_checked_ids(users):
    client = bare_client()
    materialised = list(users) if not isinstance(users, str | ObjectId | dict) else users
    expected = [user_room(uid) for uid in user_ids_of(materialised)]
    assert client._user_rooms_of(materialised) == expected  # checked, then remembered
    assert client._user_rooms_of(materialised) == expected  # remembered
    assert client._user_rooms_of([*client._user_rooms]) == [
        user_room(uid) for uid in user_ids_of([*client._user_rooms])
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "not an id",
        "5f1d7c3a9b2e4d6f8a0c1e2",  # 23 digits
        "5f1d7c3a9b2e4d6f8a0c1e2g",
        "5f1d7c3a9b2e4d6f8a0c1e2b ",
        None,
        42,
        {"name": "no id"},
    ],
)
def test_an_invalid_user_is_refused_whether_or_not_the_others_are_remembered(bad):
    client = bare_client()
    client._user_rooms_of([ADA])
    for users in ([bad], [ADA, bad], [bad, ADA]):
        with pytest.raises((ValueError, TypeError)) as raised:
            client._user_rooms_of(users)
        with pytest.raises(type(raised.value)):
            user_ids_of(users)
    assert bad not in client._user_rooms.values()


def test_the_remembered_user_rooms_are_bounded(monkeypatch):
    monkeypatch.setattr(message_client, "KNOWN_USER_ROOMS", 10)
    client = bare_client()
    ids = [f"{n:024x}" for n in range(35)]
    for uid in ids:
        assert client._user_rooms_of([uid, ADA]) == [user_room(uid), user_room(ADA)]
        assert len(client._user_rooms) <= 10
    assert client._user_rooms_of(ids) == [user_room(uid) for uid in ids]


def test_remembered_channel_rooms_follow_the_client_channels():
    client = bare_client()
    with pytest.raises(ValueError, match="declares no channels"):
        client._channel_room("room:a")
    channels = Channels()
    channels.pattern("room")(lambda _user, _name: True)
    client.channels = channels
    for _ in range(2):  # checked, then remembered
        assert client._channel_room("room:a") == channel_room("room:a")
        for bad in ("room:", "nope:a", "room:a b", "", 42, None, "Room:a"):
            with pytest.raises(ValueError):
                client._channel_room(bad)  # type: ignore[arg-type]
    other = Channels()
    other.pattern("team")(lambda _user, _name: True)
    client.channels = other  # another app's patterns: nothing remembered carries over
    with pytest.raises(ValueError, match="no such channel pattern"):
        client._channel_room("room:a")
    assert client._channel_room("team:a") == channel_room("team:a")
    client.channels = None
    with pytest.raises(ValueError, match="declares no channels"):
        client._channel_room("team:a")


# The fast path's own encoding -------------------------------------------------------


class AppPacket(sio_packet.Packet):
    """python-socketio's packet as the app's server configures it (json=jsonutil)."""

    json = jsonutil


class OtherJsonPacket(sio_packet.Packet):
    """A packet class with another JSON module: the fast path lets it encode."""

    class json:  # stands in for a module
        @staticmethod
        def dumps(value, **kwargs):
            return jsonutil.dumps(value, **kwargs).replace("ada", "ADA")

        loads = staticmethod(jsonutil.loads)


PAYLOADS = [
    None,
    "text",
    'é ✓ \u2028 \x00 "quoted" \\',
    0,
    -1.5,
    10**30,
    True,
    [1, [2, [3, {"deep": None}]]],
    {"ada": 1, "nested": {"list": [1, 2.5, "x"], "none": None}},
    {"_id": ObjectId(ADA), "at": dt.datetime(2026, 12, 6, 5, 4, 3, tzinfo=dt.UTC)},
    {"naive": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2)},
    {"tuple": (1, 2), "frozenset": frozenset({"one"})},
    ({"first": 1}, "second", [3]),
    ("ada", PositionMeta(position="x" * 22)),
    {1: "int key", "nan": float("nan"), "inf": float("inf")},
]


def fast_frame(packet_class, event, data, namespace):
    from transom_socketio.realtime.accel.fanout import FanoutManager

    fake = SimpleNamespace(server=SimpleNamespace(packet_class=packet_class))
    return FanoutManager._frame(fake, event, data, namespace)  # type: ignore[arg-type]


def stock_frame(packet_class, event, data, namespace):
    from transom_socketio.realtime.accel.fanout import websocket_text_frame

    args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
    encoded = packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
    message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
    return encoded, websocket_text_frame(message.encode().encode())


@requires_accel
@pytest.mark.parametrize("packet_class", [AppPacket, OtherJsonPacket])
@pytest.mark.parametrize("namespace", ["/", "/chat", None])
@pytest.mark.parametrize("data", PAYLOADS, ids=range(len(PAYLOADS)))
def test_the_fast_path_encodes_what_python_socketio_encodes(packet_class, namespace, data):
    assert fast_frame(packet_class, "ev", data, namespace) == stock_frame(
        packet_class, "ev", data, namespace
    )


@requires_accel
@pytest.mark.parametrize("packet_class", [AppPacket, OtherJsonPacket])
@pytest.mark.parametrize(
    "data", [b"raw", bytearray(b"raw"), {"file": b"raw"}, [1, {"deep": [b"raw"]}], ("a", b"b")]
)
def test_binary_payloads_take_python_socketio_path(packet_class, data):
    assert fast_frame(packet_class, "ev", data, "/") is None
    args = list(data) if isinstance(data, tuple) else [data]
    assert not isinstance(packet_class(sio_packet.EVENT, data=["ev", *args]).encode(), str)


@requires_accel
@pytest.mark.parametrize("data", [object(), {"set": {object()}}, {"in tuple": (b"raw",)}])
def test_a_payload_that_is_not_json_fails_as_python_socketio_fails(data):
    # The fast path hands it to python-socketio's, which raises the same TypeError.
    assert fast_frame(AppPacket, "ev", data, "/") is None
    with pytest.raises(TypeError):
        AppPacket(sio_packet.EVENT, data=["ev", data]).encode()


# Deliveries, on both paths ----------------------------------------------------------


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    return {"fast_fanout": request.param == "fast fan-out"}


async def user_sockets(api, sockets, name, count):
    user = await api.new_user(name)
    clients = [
        await sockets.connect(await api.socket_token(user), events=("seq",)) for _ in range(count)
    ]
    return user, clients


def sids_of(sio, user):
    return [sid for sid, _eio_sid in sio.manager.get_participants("/", user_room(user.id))]


@pytest.mark.gen_test(timeout=30)
async def test_skipped_sockets_get_nothing_and_the_others_everything(api, sockets, registry):
    sio = registry[keys.SOCKET_SERVER]
    ada, ada_clients = await user_sockets(api, sockets, "skipada", 3)
    bob, bob_clients = await user_sockets(api, sockets, "skipbob", 2)
    ada_sids, bob_sids = sids_of(sio, ada), sids_of(sio, bob)
    rooms = [user_room(ada.id), user_room(bob.id)]
    await sio.emit("seq", 0, to=rooms, skip_sid=ada_sids[0])
    await sio.emit("seq", 1, to=rooms, skip_sid=[ada_sids[1], bob_sids[0], "no-such-sid"])
    await sio.emit("seq", 2, to=rooms, skip_sid=[])
    await sio.emit("seq", 3, to=user_room(bob.id), skip_sid=bob_sids[1])
    expected = {
        ada_sids[0]: [1, 2],
        ada_sids[1]: [0, 2],
        ada_sids[2]: [0, 1, 2],
        bob_sids[0]: [0, 2, 3],
        bob_sids[1]: [0, 1, 2],
    }
    by_sid = {client.client.get_sid("/"): client for client in [*ada_clients, *bob_clients]}
    for sid, numbers in expected.items():
        assert await by_sid[sid].wait_for("seq", len(numbers)) == numbers
    await asyncio.sleep(0.2)
    for sid, numbers in expected.items():
        assert by_sid[sid].received("seq") == numbers, "nothing more"


@pytest.mark.gen_test(timeout=30)
async def test_rooms_that_overlap_or_are_empty_deliver_once_per_socket(api, sockets, registry):
    sio = registry[keys.SOCKET_SERVER]
    ada, ada_clients = await user_sockets(api, sockets, "overlap", 2)
    rooms = [user_room(ada.id), "everyone", "no-such-room", user_room(ada.id)]
    for number in range(20):
        await sio.emit("seq", number, to=rooms if number % 2 else "no-such-room")
        await sio.emit("seq", number, to=rooms if number % 2 == 0 else ("no-such-room",))
    for client in ada_clients:
        assert await client.wait_for("seq", 20) == list(range(20))
    await asyncio.sleep(0.2)
    assert [client.received("seq") for client in ada_clients] == [list(range(20))] * 2


@pytest.mark.gen_test(timeout=30)
async def test_many_users_in_one_emit_each_get_every_message_in_order(api, sockets, registry):
    messages = registry[keys.MESSAGE_CLIENT]
    users = [await user_sockets(api, sockets, f"many{n}", 1) for n in range(6)]
    ids = [user.id for user, _ in users]
    for number in range(60):
        # Remembered id strings, upper case, ObjectIds and duplicates in one call.
        await messages.emitToUsers(
            [*ids, ids[0].upper(), ObjectId(ids[1]), {"_id": ids[2]}], "seq", number
        )
    for _user, [client] in users:
        assert await client.wait_for("seq", 60) == list(range(60))


@pytest.mark.gen_test(timeout=30)
async def test_a_burst_of_emits_is_counted_once_each_by_the_end_of_its_pass(api, sockets, registry):
    messages = registry[keys.MESSAGE_CLIENT]
    prometheus = registry[keys.METRICS].registry
    ada, _clients = await user_sockets(api, sockets, "counted", 2)

    def sample(name, kind):
        return prometheus.get_sample_value(name, {"kind": kind}) or 0

    before = {
        (name, kind): sample(name, kind)
        for name in ("socketio_emits_total", "socketio_emit_recipients_total")
        for kind in ("users", "everyone")
    }
    for number in range(5):  # one pass: no emit here waits for anything
        await messages.emitToUsers([ada.id, "f" * 24], "seq", number)
        await messages.emitToEveryone("seq", number)
    await asyncio.sleep(0)
    assert sample("socketio_emits_total", "users") - before["socketio_emits_total", "users"] == 5
    assert (
        sample("socketio_emits_total", "everyone") == before["socketio_emits_total", "everyone"] + 5
    )
    assert (
        sample("socketio_emit_recipients_total", "users")
        == before["socketio_emit_recipients_total", "users"] + 10
    )
    assert (
        sample("socketio_emit_recipients_total", "everyone")
        == before["socketio_emit_recipients_total", "everyone"] + 10
    )
