"""The limits of the account-mail routes, and login of an unverified account.

``forgot`` and ``verify/resend`` send mail: they are counted per address typed and
client (MAIL_REQUESTS_PER_ACCOUNT, whatever its case), per address typed from every
client (4 x that) and per client address (MAIL_REQUESTS_PER_ADDRESS); ``verify`` and
``reset`` try tokens: counted per client address (TOKEN_ATTEMPTS_PER_ADDRESS). Past a
limit the answer is 429 with Retry-After, and it does nothing. Until then the answer is
202 whether or not the address has an account. The counters are atomic: concurrent
requests get no more than the limit.

The app runs behind one trusted proxy here (TRUSTED_PROXY_HOPS=1), so each request
says its client address in X-Forwarded-For. Mail goes to the development outbox.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from windows import window_with_room

from transom_socketio.auth import nonces
from transom_socketio.auth.throttle import MAIL_ACCOUNT_FACTOR
from transom_socketio.testing.clients import PASSWORD, Api, Response

FORGOT = "/api/v1/user/forgot"
RESEND = "/api/v1/user/verify/resend"
VERIFY = "/api/v1/user/verify"
RESET = "/api/v1/user/reset"
ACCEPTED = (202, {"success": True})
WINDOW = 3600
NEW_PASSWORD = "a brand new passphrase"
UNKNOWN_TOKEN = "A" * 43  # a token's shape, naming nothing


def limits(**overrides: int) -> dict[str, Any]:
    """Every account-mail limit off but those given; behind one proxy."""
    return {
        "trusted_proxy_hops": 1,
        "account_mail_window_seconds": WINDOW,
        "mail_requests_per_account": 0,
        "mail_requests_per_address": 0,
        "token_attempts_per_address": 0,
        **overrides,
    }


def client(address: str) -> dict[str, str]:
    return {"headers": {"X-Forwarded-For": address}}


def assert_throttled(response: Response, window_seconds: int = WINDOW) -> int:
    assert response.status == 429, (response.status, response.body)
    assert response.error_code == "too_many_requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_seconds
    assert response.body["error"]["retry_after"] == retry_after
    return retry_after


async def sign_up(api: Api, name: str) -> str:
    """An account whose address is not verified yet; its id."""
    created = await api.signup(email=f"{name}@example.com", password=PASSWORD, username=name)
    assert created.status == 201, created.body
    return created.body["user"]["_id"]


async def mail_count(api: Api, to: str, kind: str, settle: float = 0.3) -> int:
    """The mails of ``kind`` to ``to`` once the background sends have settled."""
    await asyncio.sleep(settle)
    return len(await api.mail(to, kind))


async def tokens_of(db: Any, user_id: str, kind: str) -> int:
    return await db[nonces.COLLECTION].count_documents({"account": ObjectId(user_id), "kind": kind})


@pytest.mark.parametrize("settings_overrides", [limits(mail_requests_per_account=3)])
@pytest.mark.gen_test(timeout=60)
async def test_forgot_and_resend_share_limits_per_address_typed_in_any_case(api, db):
    await window_with_room(WINDOW, needed=30)
    ada = await sign_up(api, "ada")
    await api.mailed_token("ada@example.com", "verify")  # the sign-up's mail is out

    # A stranger asks three times for Ada's address, in any case: its count for it is full.
    stranger = client("203.0.113.1")
    answers = [
        await api.request("POST", FORGOT, {"email": "ada@example.com"}, **stranger),
        await api.request("POST", RESEND, {"email": "ADA@Example.com"}, **stranger),
        await api.request("POST", FORGOT, {"email": " Ada@example.COM"}, **stranger),
    ]
    assert [(a.status, a.body) for a in answers] == [ACCEPTED] * 3
    assert await mail_count(api, "ada@example.com", "reset") == 2
    assert await mail_count(api, "ada@example.com", "verify") == 2  # sign-up's, resend's
    resets, verifies = await tokens_of(db, ada, "reset"), await tokens_of(db, ada, "verify")
    for path in (FORGOT, RESEND):
        assert_throttled(await api.request("POST", path, {"email": "ada@example.com"}, **stranger))
    # A 429 does nothing: no mail, no token.
    assert await mail_count(api, "ada@example.com", "reset") == 2
    assert await mail_count(api, "ada@example.com", "verify") == 2
    assert await tokens_of(db, ada, "reset") == resets
    assert await tokens_of(db, ada, "verify") == verifies

    # Ada, from her own client, is not shut out by the stranger.
    mine = await api.request("POST", FORGOT, {"email": "ada@example.com"}, **client("198.51.100.9"))
    assert (mine.status, mine.body) == ACCEPTED
    # Every client together may ask 4 x 3 = 12 mails for her address: 4 so far, 8 more.
    for index in range(8):
        more = await api.request(
            "POST", FORGOT, {"email": "ada@example.com"}, **client(f"192.0.2.{index // 3 + 1}")
        )
        assert (more.status, more.body) == ACCEPTED, index
    assert_throttled(
        await api.request("POST", FORGOT, {"email": "ada@example.com"}, **client("192.0.2.99"))
    )
    # Another address has its own counts.
    other = await api.request("POST", FORGOT, {"email": "bob@example.com"}, **stranger)
    assert (other.status, other.body) == ACCEPTED


@pytest.mark.parametrize("settings_overrides", [limits(mail_requests_per_account=2)])
@pytest.mark.gen_test(timeout=40)
async def test_an_unknown_address_is_answered_like_a_known_one_until_and_when_throttled(api):
    await window_with_room(WINDOW, needed=20)
    await sign_up(api, "ada")
    known, unknown = [], []
    for path in (FORGOT, RESEND, FORGOT):
        known.append(await api.request("POST", path, {"email": "ada@example.com"}))
        unknown.append(await api.request("POST", path, {"email": "nobody@example.com"}))
    assert [(a.status, a.body) for a in known] == [(a.status, a.body) for a in unknown]
    assert [a.status for a in known] == [202, 202, 429]
    assert known[-1].body["error"]["message"] == unknown[-1].body["error"]["message"]
    assert_throttled(known[-1])
    assert_throttled(unknown[-1])
    for answer in known + unknown:
        assert answer.headers["Content-Type"].startswith("application/json")
    assert await mail_count(api, "nobody@example.com", "reset") == 0
    assert await mail_count(api, "nobody@example.com", "verify") == 0


@pytest.mark.parametrize("settings_overrides", [limits(mail_requests_per_address=3)])
@pytest.mark.gen_test(timeout=40)
async def test_forgot_and_resend_are_limited_per_client_address(api):
    await window_with_room(WINDOW, needed=20)
    await sign_up(api, "ada")
    attacker = client("203.0.113.7")
    for path, email in ((FORGOT, "a@example.com"), (RESEND, "b@example.com"), (FORGOT, "c@x.io")):
        answer = await api.request("POST", path, {"email": email}, **attacker)
        assert (answer.status, answer.body) == ACCEPTED
    for path, email in (
        (FORGOT, "ada@example.com"),
        (RESEND, "ada@example.com"),
        (FORGOT, "d@x.io"),
    ):
        assert_throttled(await api.request("POST", path, {"email": email}, **attacker))
    assert await mail_count(api, "ada@example.com", "reset") == 0
    # An IPv6 client is counted per /64: another address in it is the same client.
    for index in range(3):
        answer = await api.request(
            "POST", FORGOT, {"email": f"v6-{index}@example.com"}, **client(f"2001:db8::{index}")
        )
        assert answer.status == 202
    assert_throttled(
        await api.request("POST", FORGOT, {"email": "v6@example.com"}, **client("2001:db8::ff"))
    )
    # Ada, from her own address, is not locked out.
    mine = await api.request("POST", FORGOT, {"email": "ada@example.com"}, **client("198.51.100.2"))
    assert (mine.status, mine.body) == ACCEPTED
    assert await mail_count(api, "ada@example.com", "reset") == 1


@pytest.mark.parametrize(
    "settings_overrides", [limits(mail_requests_per_account=2, mail_requests_per_address=2)]
)
@pytest.mark.gen_test(timeout=30)
async def test_a_refused_body_counts_nothing(api):
    await window_with_room(WINDOW, needed=20)
    for body in ({"email": "not an address"}, {}, {"email": ["ada@example.com"]}, {"x": 1}):
        for path in (FORGOT, RESEND):
            answer = await api.request("POST", path, body)
            assert answer.status == 400, answer.body
    for path in (FORGOT, RESEND):
        answer = await api.request("POST", path, {"email": "ada@example.com"})
        assert (answer.status, answer.body) == ACCEPTED
    assert_throttled(await api.request("POST", FORGOT, {"email": "ada@example.com"}))
    # The 400s are still 400s once throttled: the body is checked first.
    assert (await api.request("POST", FORGOT, {"email": "nope"})).status == 400


@pytest.mark.parametrize("settings_overrides", [limits(token_attempts_per_address=3)])
@pytest.mark.gen_test(timeout=40)
async def test_verify_and_reset_are_limited_per_client_address_and_a_429_consumes_no_token(api, db):
    await window_with_room(WINDOW, needed=20)
    ada = await sign_up(api, "ada")
    verify_token = await api.mailed_token("ada@example.com", "verify")
    await api.request("POST", FORGOT, {"email": "ada@example.com"})
    reset_token = await api.mailed_token("ada@example.com", "reset")

    attacker = client("203.0.113.7")
    for path, body in (
        (VERIFY, {"token": UNKNOWN_TOKEN}),
        (RESET, {"token": UNKNOWN_TOKEN, "password": NEW_PASSWORD}),
        (VERIFY, {"token": "short"}),
    ):
        answer = await api.request("POST", path, body, **attacker)
        assert (answer.status, answer.error_code) == (400, "invalid_token")
    # Past the limit even the right tokens are refused, and stay usable.
    assert_throttled(await api.request("POST", VERIFY, {"token": verify_token}, **attacker))
    assert_throttled(
        await api.request(
            "POST", RESET, {"token": reset_token, "password": NEW_PASSWORD}, **attacker
        )
    )
    assert await tokens_of(db, ada, "verify") == 1
    assert await tokens_of(db, ada, "reset") == 1
    user = await db["users"].find_one({"_id": ObjectId(ada)})
    assert user["verified"] is False
    assert (await api.login("ada")).error_code == "email_not_verified"

    # From another address they work.
    elsewhere = client("198.51.100.2")
    verified = await api.request("POST", VERIFY, {"token": verify_token}, **elsewhere)
    assert (verified.status, verified.body) == (200, {"success": True})
    reset = await api.request(
        "POST", RESET, {"token": reset_token, "password": NEW_PASSWORD}, **elsewhere
    )
    assert (reset.status, reset.body) == (200, {"success": True})
    assert (await api.login("ada", NEW_PASSWORD)).status == 200
    assert (await api.login("ada")).status == 401


@pytest.mark.parametrize(
    "settings_overrides", [limits(mail_requests_per_account=1, account_mail_window_seconds=2)]
)
@pytest.mark.gen_test(timeout=30)
async def test_the_limit_ends_with_its_window(api):
    await window_with_room(2, needed=1.5)
    assert (await api.request("POST", FORGOT, {"email": "ada@example.com"})).status == 202
    retry_after = assert_throttled(
        await api.request("POST", FORGOT, {"email": "ada@example.com"}), 2
    )
    await asyncio.sleep(retry_after + 0.1)
    assert (await api.request("POST", FORGOT, {"email": "ada@example.com"})).status == 202


CONCURRENT = 16
SLOTS = 3
# The per-account limit from a client per two requests (each client within its own count
# for the address typed): what every client together may ask for it, 4 x SLOTS, is the
# bound. The per-address one from one client.
PER_ACCOUNT_FROM_ALL = SLOTS * MAIL_ACCOUNT_FACTOR


@pytest.mark.parametrize(
    ("settings_overrides", "email", "spread", "accepted"),
    [
        (limits(mail_requests_per_account=SLOTS), "ada@example.com", True, PER_ACCOUNT_FROM_ALL),
        (limits(mail_requests_per_account=SLOTS), "nobody@example.com", True, PER_ACCOUNT_FROM_ALL),
        (limits(mail_requests_per_address=SLOTS), "ada@example.com", False, SLOTS),
    ],
    ids=["per-account-known", "per-account-unknown", "per-address"],
)
@pytest.mark.gen_test(timeout=60)
async def test_concurrent_forgot_requests_get_exactly_the_limit(api, db, email, spread, accepted):
    await window_with_room(WINDOW, needed=30)
    ada = await sign_up(api, "ada")
    await api.mailed_token("ada@example.com", "verify")
    answers = await asyncio.gather(
        *(
            api.request(
                "POST",
                FORGOT,
                {"email": email},
                **client(f"203.0.113.{index // 2 + 1 if spread else 1}"),
            )
            for index in range(CONCURRENT)
        )
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [202] * accepted + [429] * (CONCURRENT - accepted)
    for answer in answers:
        if answer.status == 429:
            assert_throttled(answer)
        else:
            assert answer.body == {"success": True}
    expected = accepted if email == "ada@example.com" else 0
    deadline = asyncio.get_running_loop().time() + 10
    while len(await api.mail(email, "reset")) < expected:
        assert asyncio.get_running_loop().time() < deadline, "the mails did not arrive"
        await asyncio.sleep(0.05)
    assert await mail_count(api, email, "reset", settle=0.5) == expected
    assert await tokens_of(db, ada, "reset") == expected


@pytest.mark.gen_test(timeout=30)
async def test_login_of_an_unverified_account_answers_403_only_to_the_right_password(api, settings):
    assert settings.require_verified_email is True  # the default
    await sign_up(api, "ada")
    for login in ("ada", "ADA@example.com"):
        refused = await api.login(login)
        assert (refused.status, refused.error_code) == (403, "email_not_verified")
        assert "token" not in refused.body
    for login, password in (("ada", "not the password"), ("nobody", PASSWORD)):
        wrong = await api.login(login, password)
        assert (wrong.status, wrong.error_code) == (401, "invalid_credentials")
    await api.verify("ada@example.com")
    logged_in = await api.login("ada")
    assert logged_in.status == 200
    me = await api.request("GET", "/api/v1/user/me", token=logged_in.body["token"])
    assert me.body["me"]["verified"] is True


@pytest.mark.gen_test(timeout=30)
async def test_an_account_stored_before_verification_existed_logs_in(api, db):
    ada = await sign_up(api, "ada")
    await db["users"].update_one({"_id": ObjectId(ada)}, {"$unset": {"verified": ""}})
    assert "verified" not in await db["users"].find_one({"_id": ObjectId(ada)})
    logged_in = await api.login("ada")
    assert logged_in.status == 200, logged_in.body
    me = await api.request("GET", "/api/v1/user/me", token=logged_in.body["token"])
    assert me.body["me"]["verified"] is True
    # Such an account is verified already: resend mails nothing new.
    await api.mailed_token("ada@example.com", "verify")
    assert (await api.request("POST", RESEND, {"email": "ada@example.com"})).status == 202
    assert await mail_count(api, "ada@example.com", "verify") == 1

    # An explicit false is not verified.
    await db["users"].update_one({"_id": ObjectId(ada)}, {"$set": {"verified": False}})
    assert (await api.login("ada")).error_code == "email_not_verified"
