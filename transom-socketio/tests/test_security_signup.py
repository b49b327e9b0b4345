"""Issue 14: sign-up is bounded (per address, and by the hashing queue), and emails are
one account whatever their case or Unicode form."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles

from transom_socketio.auth.passwords import Passwords
from transom_socketio.testing.clients import PASSWORD, replace_service


class GatedHasher(PasswordHasher):
    """A real Argon2 hasher that starts each hash only once ``gate`` is open: the test
    holds the one hashing thread busy for as long as it needs, without timing."""

    gate: threading.Event

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.gate.wait(timeout=30)
        return super().hash(password, salt=salt)


@pytest.mark.parametrize(
    "settings_overrides", [{"signups_per_address": 3, "signup_window_seconds": 3600}]
)
@pytest.mark.gen_test(timeout=30)
async def test_concurrent_signups_from_one_address_stop_at_the_limit_with_retry_after(
    api, db, settings_overrides
):
    responses = await asyncio.gather(
        *(api.signup(email=f"flood{i}@example.com", password=PASSWORD) for i in range(8))
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [201] * 3 + [429] * 5, statuses
    for response in responses:
        if response.status == 429:
            assert response.error_code == "too_many_requests"
            assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert await db["users"].count_documents({}) == 3


@pytest.mark.gen_test(timeout=60)
async def test_when_the_hashing_queue_is_full_signups_answer_503_at_once(api, db, app):
    hasher = GatedHasher.from_parameters(profiles.CHEAPEST)
    hasher.gate = threading.Event()
    # Four places (one thread, three waiting): sign-ups may hold half of them.
    replace_service(app, "passwords", Passwords(hasher, concurrency=1, queue=3))
    calls = [
        asyncio.ensure_future(api.signup(email=f"q{i}@example.com", password=PASSWORD))
        for i in range(6)
    ]
    try:
        # One hash runs (held at the gate) and one waits: the other four are answered
        # while the gate is still shut, so they did not wait for any hash.
        deadline = asyncio.get_running_loop().time() + 20
        while sum(call.done() for call in calls) < 4:
            assert asyncio.get_running_loop().time() < deadline, "busy answers never came"
            await asyncio.sleep(0.01)
        answered: list[Any] = [call.result() for call in calls if call.done()]
        assert [response.status for response in answered] == [503] * 4
        for response in answered:
            assert response.error_code == "busy"
            assert response.headers["Retry-After"] == "1"
    finally:
        hasher.gate.set()
    later = await asyncio.gather(*calls)
    assert sorted(response.status for response in later) == [201] * 2 + [503] * 4
    assert await db["users"].count_documents({}) == 2


@pytest.mark.gen_test
async def test_a_composed_and_a_decomposed_email_are_one_account(api, db):
    composed, decomposed = "jos\u00e9@example.com", "JOSE\u0301@Example.com"
    assert (await api.signup(email=composed, password=PASSWORD)).status == 201
    again = await api.signup(email=decomposed, password=PASSWORD)
    assert again.status == 409, again.body
    assert again.error_code == "email_taken"
    await api.verify(composed)
    assert (await api.login(decomposed)).status == 200
    assert (await api.login("jos\u00e9@EXAMPLE.COM")).status == 200
    assert await db["users"].count_documents({}) == 1


@pytest.mark.gen_test
async def test_case_folding_goes_beyond_lowercase(api):
    # "ß".lower() is "ß" but its case fold is "ss": STRASSE and straße are one address.
    assert (await api.signup(email="stra\u00dfe@example.com", password=PASSWORD)).status == 201
    again = await api.signup(email="STRASSE@example.com", password=PASSWORD)
    assert again.status == 409
    await api.verify("stra\u00dfe@example.com")
    assert (await api.login("strasse@example.com")).status == 200


class CountedGateHasher(PasswordHasher):
    """A real Argon2 hasher whose every new hash waits for a permit of ``permits``: the
    test lets hashes through one at a time, without timing. Verifying is not held."""

    permits: threading.Semaphore

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.permits.acquire(timeout=30)
        return super().hash(password, salt=salt)


async def until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "settings_overrides", [{"trusted_proxy_hops": 1, "signups_per_address": 2}]
)
@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_signups_from_many_addresses_leaves_the_owner_able_to_log_in(
    api, db, app, settings_overrides
):
    # Issue 20: sign-ups from many addresses, each within its own limit, filled the
    # hashing queue and the owner's login answered 503.
    owner = await api.new_user("owner")
    hasher = CountedGateHasher.from_parameters(profiles.CHEAPEST)
    hasher.permits = threading.Semaphore(0)
    # Eight places (one thread, seven waiting): sign-ups may hold four of them.
    passwords = Passwords(hasher, concurrency=1, queue=7)
    replace_service(app, "passwords", passwords)
    signups = [
        asyncio.ensure_future(
            api.request(
                "POST",
                "/api/v1/user/signup",
                {"email": f"burst{i}@example.com", "password": PASSWORD},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},  # one address each
            )
        )
        for i in range(40)
    ]
    try:
        await until(lambda: sum(call.done() for call in signups) >= 36, "busy answers never came")
        assert [call.result().status for call in signups if call.done()] == [503] * 36
        assert passwords.waiting == {"verify": 0, "hash": 3}  # one more hash runs

        login = asyncio.ensure_future(
            api.login("owner", owner.password, headers={"X-Forwarded-For": "203.0.113.5"})
        )
        await until(lambda: passwords.waiting["verify"] == 1 or login.done(), "no login queued")
        # The running hash ends: the thread goes to the login, before the queued sign-ups.
        hasher.permits.release()
        await until(login.done, "the login waited behind the sign-ups")
        assert login.result().status == 200, login.result().body
        assert passwords.waiting == {"verify": 0, "hash": 2}  # the next hash runs
    finally:
        hasher.permits.release(40)
    statuses = [response.status for response in await asyncio.gather(*signups)]
    assert sorted(statuses) == [201] * 4 + [503] * 36
    assert await db["users"].count_documents({}) == 5
