"""A message deleted or edited before its recipient recovers (README, "Recovering missed
messages"; SECURITY.md, "Recovery: what a position can and cannot get").

The shipped message entity emits each message under the key ``message:<id>``; its
``after_delete`` retracts the key and its ``after_update`` replaces it, so a socket
that recovers afterwards does not receive a deleted message, and receives an edited
one as edited, at its own place in the order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from transom_socketio.testing.clients import Api, SocketClient, Sockets, User

MESSAGES = "/api/v1/db/message"


async def post(api: Api, author: User, text: str, to: User) -> dict[str, Any]:
    answer = await api.request("POST", MESSAGES, {"text": text, "to": to.id}, token=author.token)
    assert answer.status == 201, answer.body
    return answer.body["message"]


async def away(api: Api, sockets: Sockets, reader: User) -> tuple[SocketClient, str]:
    """The reader's socket receives a first message, then drops: the reader's other tab
    (which stays, and so tells when what follows was delivered), and the position the
    dropped one kept."""
    socket = await sockets.connect(await api.socket_token(reader))
    tab = await sockets.connect(await api.socket_token(reader), events=("news",))
    author = await api.new_user()
    await post(api, author, "before", reader)
    await socket.wait_for("message")
    await socket.client.disconnect()
    return tab, socket.positions[-1]


async def back(
    api: Api, sockets: Sockets, reader: User, position: str, *events: str
) -> SocketClient:
    auth = {"token": await api.socket_token(reader), "position": position}
    return await sockets.connect(auth=auth, events=("recovery", *events))


@pytest.mark.gen_test(timeout=60)
async def test_a_message_deleted_before_its_recipient_recovers_is_not_replayed(api, sockets):
    alice, bob = await api.new_user(), await api.new_user()
    tab, position = await away(api, sockets, bob)
    regretted = await post(api, alice, "sent by mistake", bob)
    await post(api, alice, "hello", bob)
    deleted = await api.request("DELETE", f"{MESSAGES}/{regretted['_id']}", token=alice.token)
    assert deleted.status == 204, deleted.body
    await tab.wait_for("message", 3)  # delivered (the tab keeps what it received live)

    socket = await back(api, sockets, bob, position)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 1}]
    await socket.wait_for("message")
    await post(api, alice, "live", bob)
    received = await socket.wait_for("message", 2)
    assert [message["text"] for message in received] == ["hello", "live"]


@pytest.mark.gen_test(timeout=60)
async def test_a_message_edited_before_its_recipient_recovers_is_replayed_edited(api, sockets):
    alice, bob = await api.new_user(), await api.new_user()
    tab, position = await away(api, sockets, bob)
    typo = await post(api, alice, "helo", bob)
    await post(api, alice, "how are you?", bob)
    await tab.wait_for("message", 3)
    path = f"{MESSAGES}/{typo['_id']}"
    for text in ("hell", "hello"):  # edited twice: the last text counts
        edited = await api.request("PUT", path, {"text": text}, token=alice.token)
        assert edited.status == 200, edited.body

    socket = await back(api, sockets, bob, position)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 2}]
    received = await socket.wait_for("message", 2)
    assert [message["text"] for message in received] == ["hello", "how are you?"]
    assert received[0]["_id"] == typo["_id"]
    assert len(socket.positions) == 2  # each at its own position, as first emitted


@pytest.mark.gen_test(timeout=60)
async def test_an_edit_of_a_key_the_history_does_not_hold_is_not_kept(api, registry, sockets):
    """Edits are kept only for keys of the history's entries: one made before the emit
    (or after its entry left the history) changes nothing."""
    msg = registry["transomMsgClient"]
    reader = await api.new_user()
    tab, position = await away(api, sockets, reader)
    await msg.retract("note:1")
    await msg.replace("note:2", {"text": "replaced"})
    await msg.emitToUsers(reader.id, "message", {"text": "one"}, key="note:1")
    await msg.emitToUsers(reader.id, "message", {"text": "two"}, key="note:2")
    await tab.wait_for("message", 3)

    socket = await back(api, sockets, reader, position)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 2}]
    received = await socket.wait_for("message", 2)
    assert [message["text"] for message in received] == ["one", "two"]


@pytest.mark.gen_test(timeout=60)
async def test_the_message_client_retracts_and_replaces_any_keyed_emit(api, registry, sockets):
    msg = registry["transomMsgClient"]
    reader = await api.new_user()
    tab, position = await away(api, sockets, reader)
    await msg.emitToEveryone("news", {"text": "draft"}, key="news:1")
    await msg.emitToUsers([reader.id], "news", {"text": "secret"}, key="news:2")
    await msg.emitToUsers(reader.id, "news", {"text": "unkeyed"})
    await tab.wait_for("news", 3)
    await msg.replace("news:1", {"text": "final"})
    await msg.retract("news:2")
    for bad in ("", None, 42, "k" * 201):
        with pytest.raises(ValueError, match="key"):
            await msg.retract(bad)
    with pytest.raises(ValueError, match="key"):
        await msg.emitToUsers(reader.id, "news", {}, key="")

    socket = await back(api, sockets, reader, position, "news")
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 2}]
    await socket.wait_for("news", 2)
    assert socket.received("news") == [{"text": "final"}, {"text": "unkeyed"}]


@pytest.mark.gen_test(timeout=60)
async def test_a_retraction_is_final(api, registry, sockets):
    """A replace after the retract (an edit whose after_update ran after the delete's
    after_delete) does not bring the message back."""
    msg = registry["transomMsgClient"]
    reader = await api.new_user()
    tab, position = await away(api, sockets, reader)
    await msg.emitToUsers(reader.id, "message", {"text": "deleted"}, key="note:1")
    await msg.emitToUsers(reader.id, "message", {"text": "kept"}, key="note:2")
    await tab.wait_for("message", 3)
    await msg.retract("note:1")
    await msg.replace("note:1", {"text": "back from the dead"})

    socket = await back(api, sockets, reader, position)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 1}]
    assert [message["text"] for message in await socket.wait_for("message")] == ["kept"]


# Each round races one edit with one delete. The losing order (the delete's retract
# between the edit's write and its replace) is rare on a quiet machine: a reviewer's
# probe under load hit it in 5 rounds of 60, this test without the fix seldom does. The
# test above is the guarantee; this one checks real requests racing keep it.
ROUNDS = 40


@pytest.mark.gen_test(timeout=120)
async def test_an_edit_racing_the_delete_never_brings_the_message_back(api, sockets):
    alice, bob = await api.new_user(), await api.new_user()
    tab, position = await away(api, sockets, bob)
    for n in range(ROUNDS):
        path = f"{MESSAGES}/{(await post(api, alice, f'message {n}', bob))['_id']}"
        edited, deleted = await asyncio.gather(
            api.request("PUT", path, {"text": "edited"}, token=alice.token),
            api.request("DELETE", path, token=alice.token),
        )
        assert edited.status in (200, 404), edited.body  # 404: deleted first
        assert deleted.status == 204, deleted.body
    await post(api, alice, "last", bob)
    await tab.wait_for("message", ROUNDS + 2)

    socket = await back(api, sockets, bob, position)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 1}]
    assert [message["text"] for message in await socket.wait_for("message")] == ["last"]
