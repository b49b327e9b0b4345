"""The check that a JWT still holds, at the socket-token request and at the handshake,
and when it needs no read.

A token issued by this process carries the time its request's revocation check was
sent; with sockets in one process only, every logout and every end of a user's
sessions ends the JWT's or the user's room here after that, so the rooms tell and
the handshake asks the database nothing. The socket-token request itself trusts, the
same way, a check made here earlier: the login that issued the JWT (from the moment
it read the user), or an earlier request's read. When the rooms cannot tell (the
token was issued elsewhere, or the end may have been forgotten, or the deployment
runs several processes), both read the revocation as before. The logout races
themselves are forced in test_security_sessions.py (and its Redis twin).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from transom_socketio import registry as keys
from transom_socketio.auth.revocations import RevocationStore
from transom_socketio.auth.tokens import Principal
from transom_socketio.auth.users import UserStore
from transom_socketio.realtime import rooms
from transom_socketio.testing.clients import PASSWORD

REFUSED = [{"message": "INVALID_TOKEN"}]
SOCKET_TOKEN = "/api/v1/user/sockettoken"
NEW_PASSWORD = "staple battery horse 42"


def count_revocation_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The jti of every revocation check asked from now on (requests and handshakes)."""
    asked: list[str] = []
    check = RevocationStore.is_revoked

    async def counted(self: RevocationStore, jti: str, *args: Any, **kwargs: Any) -> bool:
        asked.append(jti)
        return await check(self, jti, *args, **kwargs)

    monkeypatch.setattr(RevocationStore, "is_revoked", counted)
    return asked


async def principal_of(app: Any, jwt: str) -> Principal:
    return await app.settings["services"].tokens.authenticate(jwt)


async def change_password(api: Any, user: Any) -> None:
    """``user`` changes their password, which ends their other sessions and their
    sockets (the caller's JWT stays valid)."""
    changed = await api.request(
        "POST",
        "/api/v1/user/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=user.token,
    )
    assert changed.status == 200, changed.body


async def forget_every_room_end_so_far(monkeypatch: pytest.MonkeyPatch, registry: Any) -> None:
    """Make the manager forget what ended until now, as it does past its bounds."""
    manager = registry[keys.SOCKET_SERVER].manager
    monkeypatch.setattr(rooms, "ROOM_ENDS_KEPT_SECONDS", 0.0)
    manager.record_room_end("test:a")
    manager.record_room_end("test:b")  # pushes "test:a" out: the forgotten time moves on
    monkeypatch.undo()


@pytest.mark.gen_test(timeout=30)
async def test_a_token_issued_here_connects_without_a_revocation_read(api, sockets, monkeypatch):
    ada = await api.new_user("ada")
    token = await api.socket_token(ada)
    asked = count_revocation_checks(monkeypatch)
    client = await sockets.connect(token)
    assert client.client.connected
    assert asked == []


@pytest.mark.gen_test(timeout=30)
async def test_a_revocation_the_rooms_cannot_tell_of_is_read(
    api, app, sockets, registry, monkeypatch
):
    # The JWT is revoked in the database with no room ending (as a revocation whose
    # disconnect never reached this process would leave it). While the rooms still
    # tell, that is the app's own doing (every revocation here ends a room); once the
    # manager may have forgotten ends since the token's check, the handshake reads.
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    revoked, live = await api.socket_token(ada), await api.socket_token(bob)
    services = app.settings["services"]
    await services.tokens.revoke(await principal_of(app, ada.token))
    await forget_every_room_end_so_far(monkeypatch, registry)
    asked = count_revocation_checks(monkeypatch)
    assert (await sockets.refused(revoked)).connect_errors == REFUSED
    client = await sockets.connect(live)
    assert client.client.connected
    assert len(asked) == 2  # one read per handshake


@pytest.mark.gen_test(timeout=30)
async def test_a_token_issued_by_another_process_is_read(api, app, sockets, monkeypatch):
    # Its grant carries no check time of this process: the handshake reads.
    ada = await api.new_user("ada")
    services = app.settings["services"]
    principal = await principal_of(app, ada.token)
    elsewhere = type(services.nonces)(services.database, ttl_seconds=30)
    token = (await elsewhere.issue(principal)).token
    asked = count_revocation_checks(monkeypatch)
    client = await sockets.connect(token)
    assert client.client.connected
    assert asked == [principal.jti]


@pytest.mark.gen_test(timeout=30)
async def test_a_password_change_ends_the_tokens_fetched_before_it(api, sockets):
    # The change keeps the caller's JWT but ends the user's sockets, and the socket
    # tokens fetched before it: a new one, fetched with the same JWT, connects.
    ada = await api.new_user("ada")
    before = await api.socket_token(ada)
    await change_password(api, ada)
    assert (await sockets.refused(before)).connect_errors == REFUSED
    client = await sockets.connect(await api.socket_token(ada))
    assert client.client.connected


def test_the_manager_remembers_room_ends_within_its_bounds(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(rooms.time, "monotonic", lambda: now[0])
    manager = rooms.RoomManager()  # every end after 0.0 is known
    for now[0], room in [(1.0, "jwt:a"), (2.0, "user:b"), (3.0, "jwt:a")]:
        manager.record_room_end(room)
    assert manager.ended_since(["jwt:a"], 2.5) is True
    assert manager.ended_since(["user:b"], 2.5) is False
    assert manager.ended_since(["jwt:z", "user:b"], 0.5) is True
    assert manager.ended_since(["jwt:z"], 0.5) is False
    now[0] = 700.0
    manager.record_room_end("jwt:c")
    # Ends of more than ROOM_ENDS_KEPT_SECONDS ago are forgotten: jwt:a's at 3.0 is the
    # newest of them, so nothing at or before 3.0 can be told any more.
    assert manager.ended_since(["jwt:z"], 3.0) is None
    assert manager.ended_since(["jwt:z"], 3.5) is False
    assert manager.ended_since(["jwt:c"], 3.5) is True


def test_the_manager_keeps_a_bounded_number_of_room_ends(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(rooms.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(rooms, "ROOM_ENDS_KEPT_AT_MOST", 3)
    manager = rooms.RoomManager()
    for n in range(5):
        now[0] = n + 1.0
        manager.record_room_end(f"jwt:{n}")
    assert manager.ended_since(["jwt:1"], 2.0) is None  # jwt:0 and jwt:1 were pushed out
    assert manager.ended_since(["jwt:2"], 2.5) is True
    assert manager.ended_since(["jwt:9"], 2.5) is False


@pytest.mark.gen_test(timeout=30)
async def test_a_logout_that_fails_midway_still_ends_the_sockets_and_tokens(
    api, app, sockets, monkeypatch
):
    # The revocation is written, then voiding the unused tokens fails: the logout still
    # disconnects the JWT's sockets, and the tokens it did not void open none.
    ada = await api.new_user("ada")
    socket = await sockets.connect(await api.socket_token(ada))
    unused = await api.socket_token(ada)
    nonces = app.settings["services"].nonces

    async def fails(jti: str) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(nonces, "discard_for_jwt", fails)
    response = await api.request("POST", "/api/v1/user/logout", token=ada.token)
    assert response.status == 500
    await asyncio.wait_for(socket.disconnected.wait(), 10)
    assert (await sockets.refused(unused)).connect_errors == REFUSED


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_token_after_login_needs_no_revocation_read(api, monkeypatch):
    # The login read the user just before issuing the JWT: that counts as its check.
    # Other routes still read on every request, and so refresh the check's time.
    ada = await api.new_user("ada")
    asked = count_revocation_checks(monkeypatch)
    for _ in range(2):
        assert (await api.request("POST", SOCKET_TOKEN, token=ada.token)).status == 200
    assert asked == []
    assert (await api.request("GET", "/api/v1/user/me", token=ada.token)).status == 200
    assert len(asked) == 1
    assert (await api.request("GET", SOCKET_TOKEN, token=ada.token)).status == 200
    assert len(asked) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_logout_or_an_end_of_sessions_here_is_read_at_once(api, monkeypatch):
    ada = await api.new_user("ada")
    other = await api.login("ada")  # a second session of ada's
    bob = await api.new_user("bob")
    asked = count_revocation_checks(monkeypatch)
    assert (await api.request("POST", "/api/v1/user/logout", token=bob.token)).status == 200
    refused = await api.request("POST", SOCKET_TOKEN, token=bob.token)
    assert (refused.status, refused.error_code) == (401, "invalid_token")
    await change_password(api, ada)
    refused = await api.request("POST", SOCKET_TOKEN, token=other.body["token"])
    assert (refused.status, refused.error_code) == (401, "invalid_token")
    assert (await api.request("POST", SOCKET_TOKEN, token=ada.token)).status == 200  # kept
    assert len(asked) == 5  # logout, password change, and each socket-token request


@pytest.mark.gen_test(timeout=30)
async def test_a_login_that_read_the_user_before_its_sessions_ended_gets_no_socket_token(
    api, monkeypatch
):
    # The login reads ada with her old password and session epoch; her password changes
    # (ending her other sessions) before the login issues its JWT, of the old epoch. That
    # JWT is revoked, though issued after the change: its check counts from the read.
    ada = await api.new_user("ada")
    read, go_on = asyncio.Event(), asyncio.Event()
    find_by_login = UserStore.find_by_login

    async def held(self: UserStore, login: str) -> Any:
        user = await find_by_login(self, login)
        if not read.is_set():
            read.set()
            await go_on.wait()
        return user

    monkeypatch.setattr(UserStore, "find_by_login", held)
    login = asyncio.ensure_future(api.login("ada"))
    await asyncio.wait_for(read.wait(), 10)
    await change_password(api, ada)
    go_on.set()
    stale = await login
    assert stale.status == 200, stale.body  # the password it checked was right then
    refused = await api.request("POST", SOCKET_TOKEN, token=stale.body["token"])
    assert (refused.status, refused.error_code) == (401, "invalid_token")


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_token_request_reads_when_the_rooms_cannot_tell(
    api, app, registry, monkeypatch
):
    # Revoked in the database with no room's end, then the manager forgets: the
    # socket-token request reads, and refuses.
    ada = await api.new_user("ada")
    await app.settings["services"].tokens.revoke(await principal_of(app, ada.token))
    await forget_every_room_end_so_far(monkeypatch, registry)
    asked = count_revocation_checks(monkeypatch)
    refused = await api.request("POST", SOCKET_TOKEN, token=ada.token)
    assert (refused.status, refused.error_code) == (401, "invalid_token")
    assert len(asked) == 1
