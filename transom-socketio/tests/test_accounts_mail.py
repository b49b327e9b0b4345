"""Accounts over real mail: an aiosmtpd server receives what the app sends (SMTP_URL),
and the tests follow the links in it, as a user would.

Sign-up mails a verification link, login waits for it; forgot mails a reset link that
works once and ends every session; a password change ends the others. Tokens are of
their own kind, stored hashed, never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from transom_socketio.auth import nonces
from transom_socketio.testing.clients import PASSWORD, User
from transom_socketio.testing.smtp import SmtpServer, link_in

PUBLIC = "https://app.example.test"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def settings_overrides(smtp):
    return {"smtp_url": smtp.url, "public_url": PUBLIC, "mail_from": "hello@app.example.test"}


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def mailed_link(smtp: SmtpServer, to: str, path: str, count: int = 1) -> str:
    messages = await smtp.wait_for(to, count=count)
    return link_in(messages[count - 1], path)


async def sign_up(api, name: str) -> dict:
    created = await api.signup(email=f"{name}@example.com", password=PASSWORD, username=name)
    assert created.status == 201, created.body
    return created.body["user"]


async def verified_user(api, smtp, name: str) -> User:
    user = await sign_up(api, name)
    link = await mailed_link(smtp, f"{name}@example.com", "/verify?token=")
    assert (
        await api.request("POST", "/api/v1/user/verify", {"token": token_of(link)})
    ).status == 200
    logged_in = await api.login(name)
    assert logged_in.status == 200, logged_in.body
    return User(user["_id"], name, f"{name}@example.com", logged_in.body["token"])


@pytest.mark.gen_test(timeout=30)
async def test_sign_up_mails_a_verification_link_and_login_waits_for_it(api, smtp):
    user = await sign_up(api, "ada")
    assert user["verified"] is False
    refused = await api.login("ada")
    assert refused.status == 403
    assert refused.error_code == "email_not_verified"
    wrong = await api.login("ada", "not the password")
    assert wrong.status == 401  # the verification state is told only to the password's owner

    (message,) = await smtp.wait_for("ada@example.com")
    assert message["From"] == "hello@app.example.test"
    assert message["To"] == "ada@example.com"
    link = link_in(message, "/verify?token=")
    assert link.startswith(f"{PUBLIC}/verify?token=")

    verified = await api.request("POST", "/api/v1/user/verify", {"token": token_of(link)})
    assert (verified.status, verified.body) == (200, {"success": True})
    logged_in = await api.login("ada")
    assert logged_in.status == 200
    me = await api.request("GET", "/api/v1/user/me", token=logged_in.body["token"])
    assert me.body["me"]["verified"] is True

    again = await api.request("POST", "/api/v1/user/verify", {"token": token_of(link)})
    assert (again.status, again.error_code) == (400, "invalid_token")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("settings_overrides", [{"require_verified_email": False}])
async def test_without_required_verification_login_works_at_once(api):
    await sign_up(api, "bob")
    assert (await api.login("bob")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_resend_answers_the_same_for_any_address_and_mails_only_unverified_accounts(
    api, smtp
):
    await sign_up(api, "cleo")
    await smtp.wait_for("cleo@example.com")
    answers = [
        await api.request("POST", "/api/v1/user/verify/resend", {"email": email})
        for email in ("CLEO@example.com", "nobody@example.com")
    ]
    assert [(a.status, a.body) for a in answers] == [(202, {"success": True})] * 2
    first, second = await smtp.wait_for("cleo@example.com", count=2)
    assert token_of(link_in(first, "/verify")) != token_of(link_in(second, "/verify"))
    # Either link verifies (each once).
    done = await api.request(
        "POST", "/api/v1/user/verify", {"token": token_of(link_in(second, "/verify"))}
    )
    assert done.status == 200
    await api.request("POST", "/api/v1/user/verify/resend", {"email": "cleo@example.com"})
    await asyncio.sleep(0.3)
    assert smtp.to("nobody@example.com") == []
    assert len(smtp.to("cleo@example.com")) == 2  # verified: no third mail


@pytest.mark.gen_test(timeout=30)
async def test_forgot_then_reset_sets_the_password_and_the_link_works_once(api, smtp):
    await verified_user(api, smtp, "dora")
    for email in ("dora@example.com", "nobody@example.com"):
        asked = await api.request("POST", "/api/v1/user/forgot", {"email": email})
        assert (asked.status, asked.body) == (202, {"success": True})
    link = await mailed_link(smtp, "dora@example.com", "/reset?token=", count=2)
    assert link.startswith(f"{PUBLIC}/reset?token=")
    token = token_of(link)

    short = await api.request("POST", "/api/v1/user/reset", {"token": token, "password": "short"})
    assert short.status == 400  # a bad password leaves the token usable
    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": NEW_PASSWORD}
    )
    assert (reset.status, reset.body) == (200, {"success": True})
    assert (await api.login("dora")).status == 401
    assert (await api.login("dora", NEW_PASSWORD)).status == 200
    again = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": "yet another one"}
    )
    assert (again.status, again.error_code) == (400, "invalid_token")
    notice = await smtp.wait_for("dora@example.com", count=3)
    assert "password" in notice[2]["Subject"].lower()
    await asyncio.sleep(0.3)
    assert smtp.to("nobody@example.com") == []


@pytest.mark.gen_test(timeout=30)
async def test_two_resets_with_one_token_exactly_one_wins(api, smtp):
    await verified_user(api, smtp, "eve")
    await api.request("POST", "/api/v1/user/forgot", {"email": "eve@example.com"})
    token = token_of(await mailed_link(smtp, "eve@example.com", "/reset?token=", count=2))
    passwords = [f"winner number {i} passphrase" for i in range(4)]
    answers = await asyncio.gather(
        *(
            api.request("POST", "/api/v1/user/reset", {"token": token, "password": p})
            for p in passwords
        )
    )
    assert sorted(a.status for a in answers) == [200, 400, 400, 400]
    assert {a.error_code for a in answers if a.status == 400} == {"invalid_token"}
    winner = passwords[[a.status for a in answers].index(200)]
    logins = [await api.login("eve", p) for p in passwords]
    assert [p for p, r in zip(passwords, logins, strict=True) if r.status == 200] == [winner]


@pytest.mark.gen_test(timeout=40)
async def test_a_reset_ends_every_jwt_and_socket_of_the_user(api, smtp, sockets):
    first = await verified_user(api, smtp, "fay")
    second_login = await api.login("fay")
    second = User(first.id, "fay", first.email, second_login.body["token"])
    other = await verified_user(api, smtp, "gus")
    open_sockets = [
        await sockets.connect(await api.socket_token(u)) for u in (first, second, other)
    ]
    unused_socket_token = await api.socket_token(first)

    await api.request("POST", "/api/v1/user/forgot", {"email": "fay@example.com"})
    token = token_of(await mailed_link(smtp, "fay@example.com", "/reset?token=", count=2))
    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status == 200

    for session in (first, second):
        me = await api.request("GET", "/api/v1/user/me", token=session.token)
        assert (me.status, me.error_code) == (401, "invalid_token")
    for client in open_sockets[:2]:
        await asyncio.wait_for(client.disconnected.wait(), 10)
    assert open_sockets[2].client.connected  # another user's socket stays
    refused = await sockets.refused(unused_socket_token)
    assert refused.connect_errors[0]["message"] == "INVALID_TOKEN"
    assert (await api.request("GET", "/api/v1/user/me", token=other.token)).status == 200

    fresh = await api.login("fay", NEW_PASSWORD)
    me = await api.request("GET", "/api/v1/user/me", token=fresh.body["token"])
    assert me.status == 200


@pytest.mark.gen_test(timeout=40)
async def test_changing_the_password_ends_the_other_sessions_only(api, smtp, sockets):
    mine = await verified_user(api, smtp, "hal")
    elsewhere = User(mine.id, "hal", mine.email, (await api.login("hal")).body["token"])
    theirs = await sockets.connect(await api.socket_token(elsewhere))

    wrong = await api.request(
        "POST",
        "/api/v1/user/password",
        {"current_password": "not my password", "new_password": NEW_PASSWORD},
        token=mine.token,
    )
    assert (wrong.status, wrong.error_code) == (403, "invalid_credentials")
    changed = await api.request(
        "POST",
        "/api/v1/user/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=mine.token,
    )
    assert (changed.status, changed.body) == (200, {"success": True})
    assert (await api.request("GET", "/api/v1/user/me", token=mine.token)).status == 200
    assert (await api.request("GET", "/api/v1/user/me", token=elsewhere.token)).status == 401
    await asyncio.wait_for(theirs.disconnected.wait(), 10)
    # This session connects again with a new socket token.
    assert (await sockets.connect(await api.socket_token(mine))).client.connected
    assert (await api.login("hal", NEW_PASSWORD)).status == 200
    anonymous = await api.request(
        "POST", "/api/v1/user/password", {"current_password": "x", "new_password": "y" * 8}
    )
    assert anonymous.status == 401


@pytest.mark.gen_test(timeout=40)
async def test_tokens_are_of_their_own_kind(api, smtp, sockets):
    user = await verified_user(api, smtp, "ida")
    await api.request("POST", "/api/v1/user/forgot", {"email": "ida@example.com"})
    reset_token = token_of(await mailed_link(smtp, "ida@example.com", "/reset?token=", count=2))
    socket_token = await api.socket_token(user)

    as_verify = await api.request("POST", "/api/v1/user/verify", {"token": reset_token})
    assert as_verify.error_code == "invalid_token"
    as_socket = await sockets.refused(reset_token)
    assert as_socket.connect_errors[0]["message"] == "INVALID_TOKEN"
    for path, body in (
        ("/api/v1/user/verify", {"token": socket_token}),
        ("/api/v1/user/reset", {"token": socket_token, "password": NEW_PASSWORD}),
    ):
        answer = await api.request("POST", path, body)
        assert (answer.status, answer.error_code) == (400, "invalid_token")
    # Each still works for its own purpose.
    assert (await sockets.connect(socket_token)).client.connected
    done = await api.request(
        "POST", "/api/v1/user/reset", {"token": reset_token, "password": NEW_PASSWORD}
    )
    assert done.status == 200


@pytest.mark.gen_test(timeout=30)
async def test_mailed_tokens_are_stored_hashed_and_never_logged(api, smtp, db, caplog):
    caplog.set_level(logging.DEBUG)
    await sign_up(api, "joe")
    await api.request("POST", "/api/v1/user/forgot", {"email": "joe@example.com"})
    verify = token_of(await mailed_link(smtp, "joe@example.com", "/verify?token="))
    reset = token_of(await mailed_link(smtp, "joe@example.com", "/reset?token=", count=2))
    stored = [doc async for doc in db[nonces.COLLECTION].find({"kind": {"$exists": True}})]
    assert {doc["kind"] for doc in stored} == {"verify", "reset"}
    text = repr(stored)
    for token in (verify, reset):
        assert token not in text
        assert hashlib.sha256(token.encode()).hexdigest() not in text  # not a socket token's id
    await api.request("POST", "/api/v1/user/verify", {"token": verify})
    await api.request("POST", "/api/v1/user/reset", {"token": reset, "password": NEW_PASSWORD})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert verify not in logged
    assert reset not in logged
    assert "mail verify sent to @example.com" in logged


@pytest.mark.gen_test(timeout=30)
async def test_a_failing_smtp_server_neither_holds_the_request_nor_loses_the_account(
    api, smtp, caplog
):
    smtp.fail_next(1)  # a 451: retried
    user = await sign_up(api, "kim")
    assert user["username"] == "kim"
    (message,) = await smtp.wait_for("kim@example.com", within=15)
    token = token_of(link_in(message, "/verify?token="))
    assert (await api.request("POST", "/api/v1/user/verify", {"token": token})).status == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("mail verify" in line and "@example.com" in line for line in warnings)
    assert not any(token in line for line in warnings)
