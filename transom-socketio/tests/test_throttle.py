"""Login throttling (issues 3 and 14): 429 with Retry-After, bounded, per account and
address, and holding under concurrent requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import tornado.httpclient
from windows import window_with_room

from transom_socketio import registry as keys
from transom_socketio.auth.throttle import (
    ADDRESS_FACTOR,
    COLLECTION,
    IDENTIFIER_FACTOR,
    LoginThrottle,
    Throttled,
)
from transom_socketio.ratelimit import address_key
from transom_socketio.testing.clients import Api, Response

SHORT_WINDOW = {"login_max_failures": 3, "login_lockout_seconds": 2}
LONG_WINDOW = {"login_max_failures": 3, "login_lockout_seconds": 60}
# Behind one proxy that appends the address it received each request from to
# X-Forwarded-For (nginx's $proxy_add_x_forwarded_for, AWS ALB): the tests send the
# header as that proxy forwards it, whatever the client put before its entry.
BEHIND_PROXY = {**LONG_WINDOW, "trusted_proxy_hops": 1}


# The test timeout of a test that waits for ``window_with_room(60, needed=5)``: up to
# 5 s of waiting, then its own requests, on a machine that may be busy (pytest-tornado's
# default of 5 s failed whenever a test started in the last 5 s of a minute).
WINDOW_WAIT_AND_WORK = 20


async def fail(api: Api, login: str, times: int, **extra: dict[str, str]) -> None:
    for _ in range(times):
        response = await api.login(login, "wrong password", **extra)
        assert response.status == 401, response.body
        assert response.error_code == "invalid_credentials"


def assert_throttled(response: Response, window_seconds: int) -> int:
    assert response.status == 429, response.body
    assert response.error_code == "too_many_requests"
    assert "token" not in response.body
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_seconds
    assert response.body["error"]["retry_after"] == retry_after
    return retry_after


@pytest.mark.parametrize("settings_overrides", [SHORT_WINDOW])
@pytest.mark.gen_test(timeout=20)
async def test_after_max_failures_even_the_right_password_gets_429_until_the_window_ends(
    api, settings_overrides
):
    await api.new_user("ada")
    await window_with_room(2, needed=1.5)
    await fail(api, "ada", 3)

    retry_after = assert_throttled(await api.login("ada"), 2)
    # Failures while locked answer 429 too, and do not extend the lock-out.
    assert_throttled(await api.login("ada", "wrong again"), 2)
    assert_throttled(await api.login("ADA"), 2)

    await asyncio.sleep(retry_after + 0.1)
    response = await api.login("ada")
    assert response.status == 200
    assert response.body["token"]


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_unknown_accounts_are_throttled_exactly_like_real_ones(api, settings_overrides):
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    await fail(api, "ada", 3)
    await fail(api, "ghost", 3)
    real, ghost = await api.login("ada"), await api.login("ghost")
    assert_throttled(real, 60)
    assert_throttled(ghost, 60)
    assert real.body["error"]["message"] == ghost.body["error"]["message"]


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_a_lock_out_by_username_does_not_tell_whose_email_is_whose(api, settings_overrides):
    ada = await api.new_user("ada")
    await api.new_user("bob")
    await window_with_room(60, needed=5)
    await fail(api, "ada", 3)
    assert_throttled(await api.login("ADA", "wrong"), 60)  # any spelling of what was typed
    # Her email and someone else's answer alike: 401, a guess each.
    for email in (ada.email, ada.email.upper(), "bob@example.com", "nobody@example.com"):
        answer = await api.login(email, "wrong password")
        assert (answer.status, answer.error_code) == (401, "invalid_credentials"), email


@pytest.mark.parametrize("settings_overrides", [{**BEHIND_PROXY, "login_max_failures": 1}])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_a_username_guessed_from_many_addresses_does_not_tell_whose_email_is_whose(
    api, settings_overrides
):
    """The ceiling of guesses from every address was the account's: once twenty
    addresses had used it up by username, the account's email got 429 from anywhere and
    every other email 401, which told whose email it is (found by a review). Each
    identifier typed has its own ceiling, half the account's, so the owner also still
    logs in with the other one."""
    ada = await api.new_user("ada")
    await api.new_user("bob")
    await window_with_room(60, needed=5)
    ceiling = IDENTIFIER_FACTOR * settings_overrides["login_max_failures"]
    for i in range(ceiling):
        await fail(api, "ada", 1, headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
    fresh = {"headers": {"X-Forwarded-For": "203.0.113.77"}}
    assert_throttled(await api.login("ada", **fresh), 60)
    for email in (ada.email, "bob@example.com", "nobody@example.com"):
        answer = await api.login(
            email, "wrong password", headers={"X-Forwarded-For": "203.0.113.78"}
        )
        assert (answer.status, answer.error_code) == (401, "invalid_credentials"), email
    assert (await api.login(ada.email, **fresh)).status == 200


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_a_successful_login_clears_the_failures_of_that_account_and_address(
    api, settings_overrides
):
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    for _ in range(3):
        await fail(api, "ada", 2)
        assert (await api.login("ada")).status == 200


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_a_lock_out_from_one_address_does_not_lock_the_user_out_elsewhere(
    api, settings_overrides
):
    attacker = {"headers": {"X-Forwarded-For": "203.0.113.7"}}
    user = {"headers": {"X-Forwarded-For": "198.51.100.20"}}
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    await fail(api, "ada", 3, **attacker)
    assert_throttled(await api.login("ada", **attacker), 60)
    assert (await api.login("ada", **user)).status == 200


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_behind_one_proxy_no_header_the_client_sends_changes_the_address_counted(
    api, settings_overrides
):
    # Issue 20: Tornado's xheaders let a client's X-Real-IP win over the entry the proxy
    # appended, so every failure could come from an address of its own.
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    # The attacker is 203.0.113.7; the proxy appends that after whatever it sent.
    forged = [
        {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "198.51.100.1"},
        {"X-Forwarded-For": "198.51.100.2, 203.0.113.7"},
        {"X-Forwarded-For": "198.51.100.3,10.0.0.3, 203.0.113.7", "X-Real-IP": "198.51.100.4"},
    ]
    for headers in forged:
        await fail(api, "ada", 1, headers=headers)
    more_forged = [
        {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "198.51.100.5"},
        {"X-Forwarded-For": "198.51.100.6, 203.0.113.7", "Forwarded": "for=198.51.100.7"},
        {"X-Forwarded-For": "198.51.100.8, 203.0.113.7", "X-Client-IP": "198.51.100.9"},
    ]
    for headers in more_forged:
        assert_throttled(await api.login("ada", headers=headers), 60)
    # The entry the proxy appended is what counts: another client logs in, even one
    # that names the attacker's address on the left.
    other = {"X-Forwarded-For": "203.0.113.7, 198.51.100.20", "X-Real-IP": "203.0.113.7"}
    assert (await api.login("ada", headers=other)).status == 200


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_without_trusted_proxies_every_proxy_header_is_ignored(api, settings_overrides):
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    for i in range(3):
        headers = {"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"198.51.100.{50 + i}"}
        await fail(api, "ada", 1, headers=headers)
    # Every attempt came from 127.0.0.1, the TCP peer: locked out, whatever the headers.
    headers = {"X-Forwarded-For": "198.51.100.99", "X-Real-IP": "198.51.100.98"}
    assert_throttled(await api.login("ada", headers=headers), 60)


async def reserve_times(throttle: LoginThrottle, account: str, address: str, times: int) -> None:
    for _ in range(times):
        await throttle.reserve(account, address)


@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_the_store_limits_per_account_and_address_per_address_and_per_account(app, db):
    throttle = LoginThrottle(db, max_failures=2, window_seconds=60)
    await window_with_room(60, needed=5)

    await reserve_times(throttle, "ada", "10.0.0.1", 2)
    with pytest.raises(Throttled) as throttled:
        await throttle.reserve("ada", "10.0.0.1")
    assert 0 < throttled.value.retry_after <= 60
    await throttle.reserve("ada", "10.0.0.2")
    await throttle.reserve("grace", "10.0.0.1")

    # Per address: 4 x max attempts across accounts lock that address for every account.
    for name in ("b1", "b2", "b3", "b4"):
        await reserve_times(throttle, name, "10.0.0.9", 2)
    with pytest.raises(Throttled):
        await throttle.reserve("anyone", "10.0.0.9")

    # Per account: 20 x max attempts from many addresses lock that account everywhere.
    for i in range(40):
        await throttle.reserve("target", f"192.0.2.{i}")
    with pytest.raises(Throttled):
        await throttle.reserve("target", "192.0.2.250")
    await throttle.reserve("bystander", "192.0.2.250")

    # Per identifier typed at login: 10 x max, whatever account it names.
    for i in range(20):
        await throttle.reserve("user:ada", f"198.51.100.{i}", "login:ada")
    with pytest.raises(Throttled):
        await throttle.reserve("user:ada", "198.51.100.250", "login:ada")
    await throttle.reserve("user:ada", "198.51.100.250", "login:ada@example.com")


@pytest.mark.gen_test
async def test_the_attempt_counters_hold_no_login_or_address(app, db):
    throttle = LoginThrottle(db, max_failures=2, window_seconds=60)
    await throttle.reserve("login:ada@example.com", "10.9.8.7")
    stored = await db["login_failures"].find({}).to_list(None)
    assert len(stored) == 3
    for document in stored:
        assert "ada" not in repr(document)
        assert "10.9.8.7" not in repr(document)
        assert document["expires_at"] is not None


# Issue 14: concurrency. A slot is reserved before the password is verified, so however
# many logins arrive together, at most LOGIN_MAX_FAILURES passwords are evaluated.
CONCURRENT = {"login_max_failures": 5, "login_lockout_seconds": 60, "trusted_proxy_hops": 1}
ATTACKER = {"X-Forwarded-For": "203.0.113.66"}
OWNER = {"X-Forwarded-For": "198.51.100.5"}


@pytest.fixture
def wide_api(app, http_server, base_url) -> Iterator[Api]:
    """An HTTP client that really sends 100 requests at once (Tornado's default client
    queues all but 10)."""
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=200)
    yield Api(client, base_url)
    client.close()


def concurrent_logins_each(
    api: Api, logins: list[tuple[str, str]]
) -> list[Coroutine[Any, Any, Response]]:
    return [api.login(login, password, headers=ATTACKER) for login, password in logins]


async def concurrent_logins(api: Api, logins: list[tuple[str, str]]) -> list[Response]:
    return await asyncio.gather(*concurrent_logins_each(api, logins))


@pytest.mark.parametrize("settings_overrides", [CONCURRENT])
@pytest.mark.gen_test(timeout=60)
async def test_thirty_concurrent_logins_evaluate_at_most_max_failures_passwords(
    wide_api, registry, settings_overrides, monkeypatch
):
    user = await wide_api.new_user("ada")
    await window_with_room(60, needed=20)
    passwords = registry[keys.PASSWORDS]
    before = passwords.evaluations
    attempts = [("ada", f"wrong {i}") for i in range(29)]
    attempts.insert(17, ("ada", user.password))
    # The burst reaches the throttle at once: no password is checked until every attempt
    # has its slot or its 429. (On a loaded machine the requests otherwise reach it one
    # by one, and an attempt that comes after the right password was checked is a new
    # one: that success forgot the pair's failures, as it does for the owner.) With a
    # throttle that let more than 5 through, fewer than 25 answers come back 429 and
    # the gate opens at its deadline instead: more than 5 passwords are then checked.
    gate = asyncio.Event()
    verify = passwords.verify

    async def verify_at_the_gate(*args: str) -> tuple[bool, bool]:
        await gate.wait()
        return await verify(*args)

    monkeypatch.setattr(passwords, "verify", verify_at_the_gate)
    burst = [asyncio.ensure_future(task) for task in concurrent_logins_each(wide_api, attempts)]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        refused = [task for task in burst if task.done() and task.result().status == 429]
        if len(refused) >= len(attempts) - 5:
            break
        await asyncio.sleep(0.02)
    gate.set()
    responses = await asyncio.gather(*burst)

    statuses = [response.status for response in responses]
    assert set(statuses) <= {200, 401, 429}, statuses
    evaluated = statuses.count(401) + statuses.count(200)
    assert evaluated <= 5, statuses
    assert passwords.evaluations - before <= 5
    for response in responses:
        if response.status == 429:
            assert_throttled(response, 60)


@pytest.mark.parametrize("settings_overrides", [CONCURRENT])
@pytest.mark.gen_test(timeout=90)
async def test_a_hundred_concurrent_wrong_logins_neither_get_through_nor_lock_the_owner_out(
    wide_api, registry, settings_overrides
):
    await wide_api.new_user("ada")
    await window_with_room(60, needed=30)
    passwords = registry[keys.PASSWORDS]
    before = passwords.evaluations

    responses = await concurrent_logins(wide_api, [("ada", f"guess {i}") for i in range(100)])

    statuses = [response.status for response in responses]
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(401) + statuses.count(429) == 100, statuses
    assert passwords.evaluations - before <= 5
    # Another 100 from the attacker's address are refused without any evaluation...
    again = await concurrent_logins(wide_api, [("ada", f"more {i}") for i in range(100)])
    assert {response.status for response in again} == {429}
    assert passwords.evaluations - before <= 5
    # ...and the owner, from elsewhere, still logs in.
    owner = await wide_api.login("ada", headers=OWNER)
    assert owner.status == 200, owner.body


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_username_and_email_of_one_account_each_have_their_guesses_per_address(
    api, settings_overrides
):
    # One budget per identifier typed (any case): sharing it told a client that had
    # used it up by username which email is that account's (the test above). So does
    # the ceiling from every address (10 x each).
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    await fail(api, "ada", 3)
    assert_throttled(await api.login("Ada"), 60)
    await fail(api, "ADA@Example.COM", 3)
    assert_throttled(await api.login("ada@example.com", "wrong"), 60)


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_an_unknown_identifier_has_one_budget_whatever_its_case_or_unicode_form(
    api, settings_overrides
):
    await window_with_room(60, needed=5)
    await fail(api, "jos\u00e9@example.com", 2)  # é composed
    await fail(api, "JOSE\u0301@example.com", 1)  # E and a combining acute accent
    assert_throttled(await api.login("Jos\u00c9@Example.com", "wrong"), 60)


@pytest.mark.parametrize("settings_overrides", [BEHIND_PROXY])
@pytest.mark.gen_test(timeout=WINDOW_WAIT_AND_WORK)
async def test_addresses_of_one_ipv6_subscriber_share_one_budget(api, settings_overrides):
    # A /64 is one subscriber: rotating addresses inside it buys no more guesses.
    await api.new_user("ada")
    await window_with_room(60, needed=5)
    for host in range(1, 4):
        await fail(api, "ada", 1, headers={"X-Forwarded-For": f"2001:db8:1:2::{host}"})
    rotated = await api.login("ada", "wrong", headers={"X-Forwarded-For": "[2001:db8:1:2::99]"})
    assert_throttled(rotated, 60)
    elsewhere = await api.login("ada", headers={"X-Forwarded-For": "2001:db8:1:3::1"})
    assert elsewhere.status == 200


@pytest.mark.parametrize("settings_overrides", [LONG_WINDOW])
@pytest.mark.gen_test(timeout=30)
async def test_an_address_past_its_limit_writes_no_new_counters(api, db, settings_overrides):
    # Issue 20 (audit): the account-and-address counter was taken first, so a login
    # refused by its full address counter still inserted a counter for each new name it
    # tried (given back to 0, but kept until its window ended): one document per request,
    # from one address, with no limit. The address counter is now taken first.
    await window_with_room(60, needed=20)
    for guess in range(3 * ADDRESS_FACTOR):  # one guess per name: only the address fills
        await fail(api, f"ghost-{guess}", 1)
    assert_throttled(await api.login("ghost-next"), 60)
    live = {"expires_at": {"$gt": dt.datetime.now(dt.UTC)}}
    counters = await db[COLLECTION].count_documents(live)
    for name in range(50):
        assert_throttled(await api.login(f"another-ghost-{name}"), 60)
    assert await db[COLLECTION].count_documents(live) == counters


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_per_address_limits_count_an_ipv4_address_or_an_ipv6_64(address, key):
    assert address_key(address) == key


@pytest.mark.gen_test(timeout=30)
async def test_a_right_password_forgets_failures_only_when_no_other_attempt_is_being_checked(db):
    """The owner's login beside a burst of guesses must not hand the burst fresh slots:
    a success clears its account-and-address counter only when it is the one attempt
    pending there (30 concurrent logins with one right password once checked 9)."""
    await window_with_room(60, needed=5)
    throttle = LoginThrottle(db, max_failures=3, window_seconds=60)

    async def pair_count() -> int:
        found = await db[COLLECTION].find_one({"_id": throttle_pair_id(throttle)})
        return 0 if found is None else found["count"]

    guess = await throttle.reserve("user:ada", "198.51.100.7")
    owner = await throttle.reserve("user:ada", "198.51.100.7")
    await throttle.succeeded(owner)  # the guess is still being checked: nothing forgotten
    assert await pair_count() == 2
    await throttle.failed(guess)
    assert await pair_count() == 2
    # Alone, the owner's next right password forgets every failure of the pair.
    await throttle.succeeded(await throttle.reserve("user:ada", "198.51.100.7"))
    assert await pair_count() == 0


def throttle_pair_id(throttle: LoginThrottle) -> str:
    limit = throttle.limits("user:ada", "198.51.100.7")[1]
    window = int(time.time() // 60)
    return throttle._counter._doc_id(limit, window)
