"""With REDIS_URL, a handshake and a socket-token request always read their JWT's
revocation: another process's logout reaches this one as a Redis message, and one
lost while the subscriber reconnects would leave no room's end here to tell of it."""

from __future__ import annotations

import pytest
from conftest import ON_REDIS
from test_handshake_revocation_check import (
    REFUSED,
    SOCKET_TOKEN,
    count_revocation_checks,
    principal_of,
)

pytestmark = ON_REDIS


@pytest.mark.gen_test(timeout=30)
async def test_a_revocation_no_room_end_told_of_is_read(api, app, sockets, monkeypatch):
    # Revoked in the database, with no room's end (as a lost message would leave it):
    # the handshake, of a token issued here, reads it and refuses.
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    revoked, live = await api.socket_token(ada), await api.socket_token(bob)
    await app.settings["services"].tokens.revoke(await principal_of(app, ada.token))
    asked = count_revocation_checks(monkeypatch)
    assert (await sockets.refused(revoked)).connect_errors == REFUSED
    client = await sockets.connect(live)
    assert client.client.connected
    assert len(asked) == 2


@pytest.mark.gen_test(timeout=30)
async def test_every_socket_token_request_reads(api, monkeypatch):
    ada = await api.new_user("ada")
    asked = count_revocation_checks(monkeypatch)
    for _ in range(2):
        assert (await api.request("POST", SOCKET_TOKEN, token=ada.token)).status == 200
    assert len(asked) == 2
