"""Issue 14: sign-up is bounded (per address, and by the hashing queue), and emails are
one account whatever their case or Unicode form."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles

from {{ cookiecutter.project_slug }}.auth.passwords import Passwords

from .support import PASSWORD, replace_service


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
    replace_service(app, "passwords", Passwords(hasher, concurrency=1, queue=1))
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
    assert (await api.login(decomposed)).status == 200
    assert (await api.login("jos\u00e9@EXAMPLE.COM")).status == 200
    assert await db["users"].count_documents({}) == 1


@pytest.mark.gen_test
async def test_case_folding_goes_beyond_lowercase(api):
    # "ß".lower() is "ß" but its case fold is "ss": STRASSE and straße are one address.
    assert (await api.signup(email="stra\u00dfe@example.com", password=PASSWORD)).status == 201
    again = await api.signup(email="STRASSE@example.com", password=PASSWORD)
    assert again.status == 409
    assert (await api.login("strasse@example.com")).status == 200
