"""Login, me and logout: credentials, the JWT returned, rehashing, revocation."""

from __future__ import annotations

import asyncio
import statistics
import time

import jwt
import pytest
from argon2 import PasswordHasher, profiles
from bson import ObjectId

from transom_socketio import registry as keys
from transom_socketio.auth.passwords import Passwords
from transom_socketio.testing.clients import PASSWORD, replace_service

LOGIN = "/api/v1/user/login"
ME = "/api/v1/user/me"
LOGOUT = "/api/v1/user/logout"


@pytest.mark.gen_test
async def test_login_by_username_returns_a_bearer_jwt_for_that_user(api, settings):
    user = await api.new_user("ada")
    response = await api.login("ada")
    assert response.status == 200
    assert set(response.body) == {"token", "token_type", "expires_in"}
    assert response.body["token_type"] == "Bearer"
    assert response.body["expires_in"] == 3600
    claims = jwt.decode(response.body["token"], settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == user.id
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]


@pytest.mark.parametrize("login", ["ada", "ADA", "ada@example.com", "Ada@EXAMPLE.com"])
@pytest.mark.gen_test
async def test_login_by_username_or_email_without_regard_to_case(api, login):
    user = await api.new_user("ada")
    response = await api.login(login)
    assert response.status == 200
    me = await api.request("GET", ME, token=response.body["token"])
    assert me.body["me"]["_id"] == user.id


@pytest.mark.gen_test
async def test_login_accepts_an_email_field(api):
    await api.new_user("ada")
    response = await api.request("POST", LOGIN, {"email": "ada@example.com", "password": PASSWORD})
    assert response.status == 200


@pytest.mark.parametrize("settings_overrides", [{"jwt_ttl_seconds": 120}])
@pytest.mark.gen_test
async def test_expires_in_follows_jwt_ttl_seconds(api, settings):
    await api.new_user("ada")
    response = await api.login("ada")
    assert response.body["expires_in"] == 120
    claims = jwt.decode(response.body["token"], settings.jwt_secret, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.gen_test
async def test_unknown_user_and_wrong_password_get_the_identical_401(api):
    await api.new_user("ada")
    wrong_password = await api.login("ada", "not the password")
    unknown_user = await api.login("nobody", PASSWORD)
    unknown_email = await api.login("nobody@example.com", PASSWORD)
    for response in (wrong_password, unknown_user, unknown_email):
        assert response.status == 401
        assert response.error_code == "invalid_credentials"
    assert wrong_password.body == unknown_user.body == unknown_email.body
    assert "token" not in wrong_password.body


@pytest.mark.gen_test
async def test_login_rehashes_a_password_hashed_with_other_parameters(api, db, registry):
    user = await api.new_user("ada")
    older = Passwords(
        PasswordHasher(time_cost=2, memory_cost=16, parallelism=1, hash_len=16, salt_len=16)
    )
    old_hash = await older.hash(PASSWORD)
    users = db["users"]
    await users.update_one({"_id": ObjectId(user.id)}, {"$set": {"password_hash": old_hash}})

    assert (await api.login("ada", "wrong password")).status == 401
    assert (await users.find_one({"_id": ObjectId(user.id)}))["password_hash"] == old_hash

    assert (await api.login("ada")).status == 200
    new_hash = (await users.find_one({"_id": ObjectId(user.id)}))["password_hash"]
    assert new_hash != old_hash
    current: Passwords = registry[keys.PASSWORDS]
    assert await current.verify(new_hash, PASSWORD) == (True, False)

    # Now current: a further login leaves the hash alone.
    assert (await api.login("ada")).status == 200
    assert (await users.find_one({"_id": ObjectId(user.id)}))["password_hash"] == new_hash


def production_hash_seconds() -> float:
    started = time.perf_counter()
    PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY).hash(PASSWORD)
    return time.perf_counter() - started


@pytest.mark.gen_test(timeout=30)
async def test_hashing_at_production_cost_never_blocks_the_event_loop(api, app):
    replace_service(app, "passwords", Passwords.for_environment("production"))
    one_hash = production_hash_seconds()
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    created = await api.signup(email="slow@example.com", password=PASSWORD, username="slow")
    await api.verify("slow@example.com")
    logged_in = await api.login("slow")
    unknown = await api.login("nobody")
    done.set()
    await ticker
    assert (created.status, logged_in.status, unknown.status) == (201, 200, 401)
    assert max(gaps) < one_hash / 2, (max(gaps), one_hash)


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_account_costs_a_password_verification_too(app):
    # Costly enough to measure (about 20 ms), cheap enough to repeat.
    passwords = Passwords(PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1))
    stored = await passwords.hash(PASSWORD)

    async def seconds(password_hash: str | None) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            await passwords.verify(password_hash, "wrong password")
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    await passwords.verify(None, "warm up the dummy hash")
    known, unknown = await seconds(stored), await seconds(None)
    assert unknown > known / 2, (unknown, known)


@pytest.mark.gen_test
async def test_me_returns_the_public_user(api):
    user = await api.new_user("ada")
    me = await api.request("GET", ME, token=user.token)
    assert me.status == 200
    assert me.body["me"] == {
        "_id": user.id,
        "username": "ada",
        "email": "ada@example.com",
        "display_name": "ada",
        "groups": [],
        "verified": True,
        "created_at": me.body["me"]["created_at"],
    }


@pytest.mark.gen_test
async def test_me_without_a_token_answers_401_with_www_authenticate(api):
    response = await api.request("GET", ME)
    assert response.status == 401
    assert response.error_code == "authentication_required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer   ", "Basic YWRhOnB3", "Token abc", "bearer not.a.jwt"]
)
@pytest.mark.gen_test
async def test_a_malformed_authorization_header_answers_401_invalid_token(api, header):
    response = await api.request("GET", ME, headers={"Authorization": header})
    assert response.status == 401
    assert response.error_code == "invalid_token"


@pytest.mark.gen_test
async def test_me_for_a_deleted_account_answers_401(api, db):
    user = await api.new_user("ada")
    await db["users"].delete_one({"_id": ObjectId(user.id)})
    response = await api.request("GET", ME, token=user.token)
    assert response.status == 401
    assert response.error_code == "invalid_token"


@pytest.mark.gen_test
async def test_logout_revokes_only_that_token_until_it_expires(api, db, settings):
    user = await api.new_user("ada")
    other_session = (await api.login("ada")).body["token"]

    out = await api.request("POST", LOGOUT, token=user.token)
    assert out.status == 200
    assert out.body == {"success": True}

    for method, path in (("GET", ME), ("POST", LOGOUT), ("GET", "/api/v1/user/sockettoken")):
        refused = await api.request(method, path, token=user.token)
        assert refused.status == 401, (method, path)
        assert refused.error_code == "invalid_token"
    assert (await api.request("GET", ME, token=other_session)).status == 200

    claims = jwt.decode(user.token, settings.jwt_secret, algorithms=["HS256"])
    revoked = await db["revoked_tokens"].find_one({"_id": claims["jti"]})
    assert int(revoked["expires_at"].timestamp()) == claims["exp"]


@pytest.mark.gen_test
async def test_logout_without_a_token_answers_401(api):
    response = await api.request("POST", LOGOUT)
    assert response.status == 401
    assert response.error_code == "authentication_required"
