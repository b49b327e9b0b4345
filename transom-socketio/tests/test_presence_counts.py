"""Socket counts across processes: ``socket_counts(users)`` and ``online_counts()`` on
the message client (the presence store's counts, not ``io.manager.room_size``, which
sees only this process's sockets)."""

from __future__ import annotations

import pytest
from test_presence import eventually

from transom_socketio.realtime.presence import OnlineCounts


@pytest.mark.gen_test(timeout=60)
async def test_socket_counts_and_online_counts_follow_every_socket(api, sockets, registry):
    msg = registry["transomMsgClient"]
    ada, bob, cyd = [await api.new_user(name) for name in ("ada", "bob", "cyd")]
    assert await msg.socket_counts([ada.id, bob.id]) == {ada.id: 0, bob.id: 0}
    assert await msg.online_counts() == OnlineCounts(users=0, sockets=0)

    ada_tabs = [await sockets.connect(await api.socket_token(ada)) for _ in range(2)]
    bob_tab = await sockets.connect(await api.socket_token(bob))
    await sockets.refused("not-a-token")  # a refused handshake counts nowhere

    # Every form of user emitToUsers takes; duplicates collapse.
    assert await msg.socket_counts([ada.id, {"_id": bob.id}, cyd.id, ada.id]) == {
        ada.id: 2,
        bob.id: 1,
        cyd.id: 0,
    }
    assert await msg.socketCounts(ada.id) == {ada.id: 2}
    online = await msg.online_counts()
    assert online == (2, 3) and (online.users, online.sockets) == (2, 3)
    assert await msg.onlineCounts() == online

    await ada_tabs[0].client.disconnect()
    await eventually(lambda: _counts_are(msg, {ada.id: 1, bob.id: 1}, OnlineCounts(2, 2)))
    await bob_tab.client.disconnect()
    await ada_tabs[1].client.disconnect()
    await eventually(lambda: _counts_are(msg, {ada.id: 0, bob.id: 0}, OnlineCounts(0, 0)))


async def _counts_are(msg, counts: dict[str, int], online: OnlineCounts) -> bool:
    return await msg.socket_counts(list(counts)) == counts and await msg.online_counts() == online


@pytest.mark.gen_test(timeout=30)
async def test_socket_counts_of_no_user_is_empty(registry):
    assert await registry["transomMsgClient"].socket_counts([]) == {}
