"""registry['transomMsgClient']: emitToUsers / emitToEveryone / disconnectUsers."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import pytest
from bson import ObjectId

from transom_socketio import registry as keys
from transom_socketio.config import ConfigError, Settings
from transom_socketio.realtime.redis_queue import write_only_message_client
from transom_socketio.testing.plugin import TEST_SECRET


@dataclass
class UserObject:
    _id: ObjectId


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    """Every delivery check runs on both paths of realtime/accel/fanout.py."""
    return {"fast_fanout": request.param == "fast fan-out"}


@pytest.fixture
def messages(registry):
    return registry[keys.MESSAGE_CLIENT]


async def connected(api, sockets, name, tabs=1):
    user = await api.new_user(name)
    clients = [
        await sockets.connect(await api.socket_token(user), events=("ping",)) for _ in range(tabs)
    ]
    return user, clients


async def quiet(*clients, event="ping"):
    """Give stray deliveries a moment to arrive, then return what each client got."""
    await asyncio.sleep(0.3)
    return [client.received(event) for client in clients]


@pytest.mark.gen_test(timeout=30)
async def test_both_registry_names_are_the_same_client(registry):
    assert registry[keys.MESSAGE_CLIENT] is registry["transomMessageClient"]
    assert registry["transomMsgClient"].io is registry[keys.SOCKET_SERVER]
    with pytest.raises(AttributeError):
        registry["transomMsgClient"].io = None


@pytest.mark.gen_test(timeout=30)
async def test_emit_to_users_accepts_every_form_of_user(api, sockets, messages):
    ada, [ada_tab1, ada_tab2] = await connected(api, sockets, "ada", tabs=2)
    _bob, [bob_socket] = await connected(api, sockets, "bob")
    _cyd, [cyd_socket] = await connected(api, sockets, "cyd")
    forms = [
        {"_id": ObjectId(ada.id)},
        {"id": ada.id},
        UserObject(ObjectId(ada.id)),
        ada.id,
        ObjectId(ada.id),
    ]
    for number, form in enumerate(forms):
        assert await messages.emitToUsers(form, "ping", {"n": number}) == 1
    for tab in (ada_tab1, ada_tab2):
        got = await tab.wait_for("ping", len(forms))
        assert [p["n"] for p in got] == list(range(len(forms)))
    assert await quiet(bob_socket, cyd_socket) == [[], []]


@pytest.mark.gen_test(timeout=30)
async def test_duplicates_collapse_and_users_without_sockets_are_skipped(api, sockets, messages):
    ada, [ada_socket] = await connected(api, sockets, "ada")
    bob, [bob_socket] = await connected(api, sockets, "bob")
    offline = await api.new_user("offline")
    targeted = await messages.emitToUsers(
        [ada.id, {"_id": ada.id}, ObjectId(ada.id), bob.id, offline.id], "ping", {"x": 1}
    )
    assert targeted == 3
    assert await quiet(ada_socket, bob_socket) == [[{"x": 1}], [{"x": 1}]]


@pytest.mark.gen_test(timeout=30)
async def test_emit_to_everyone_reaches_every_authenticated_socket(api, sockets, messages):
    _ada, ada_tabs = await connected(api, sockets, "ada", tabs=2)
    _bob, bob_tabs = await connected(api, sockets, "bob")
    await messages.emitToEveryone("ping", {"all": True})
    assert await quiet(*ada_tabs, *bob_tabs) == [[{"all": True}]] * 3


@pytest.mark.gen_test(timeout=30)
async def test_objectids_and_datetimes_are_sent_as_strings(api, sockets, messages):
    ada, [ada_socket] = await connected(api, sockets, "ada")
    oid = ObjectId()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    await messages.emit_to_users(ada.id, "ping", {"id": oid, "at": when, "nested": [{"id": oid}]})
    [payload] = await ada_socket.wait_for("ping")
    assert payload == {"id": str(oid), "at": "2026-01-02T03:04:05Z", "nested": [{"id": str(oid)}]}


@pytest.mark.gen_test
async def test_bad_arguments_raise_clear_errors(messages):
    valid = str(ObjectId())
    with pytest.raises(TypeError, match="None"):
        await messages.emitToUsers(None, "ping", {})
    with pytest.raises(ValueError, match="user id"):
        await messages.emitToUsers({"name": "no id"}, "ping", {})
    with pytest.raises(ValueError, match="not a user id"):
        await messages.emitToUsers("ada", "ping", {})
    with pytest.raises(TypeError, match="None"):
        await messages.emitToUsers([valid, None], "ping", {})
    for channel in ("", None, 42):
        with pytest.raises(ValueError, match="channelName"):
            await messages.emitToUsers(valid, channel, {})
        with pytest.raises(ValueError, match="channelName"):
            await messages.emitToEveryone(channel, {})


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_users_closes_every_socket_of_those_users(api, sockets, messages):
    ada, ada_tabs = await connected(api, sockets, "ada", tabs=2)
    _bob, [bob_socket] = await connected(api, sockets, "bob")
    assert await messages.disconnectUsers([ada.id]) == 1
    for tab in ada_tabs:
        await asyncio.wait_for(tab.disconnected.wait(), 5)
    await asyncio.sleep(0.2)
    assert bob_socket.client.connected
    await messages.disconnect_users({"_id": ada.id})  # nobody left: a no-op


def test_a_process_without_sockets_needs_redis_url():
    # Without Redis its emits would reach no socket: refused, not silently lost.
    with pytest.raises(ConfigError, match="REDIS_URL"):
        write_only_message_client(Settings(app_env="test", jwt_secret=TEST_SECRET))
