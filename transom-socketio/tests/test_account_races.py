"""Account changes racing one another (SECURITY.md, "Accounts").

A password change, and a login that upgrades a password's hash, decide on a user read
before they hash a password, which takes a while by design (Argon2). Whatever ends the
user's sessions or sets a new password meanwhile (a demotion, an administrator's logout,
a reset) must stand:

- a password change that lands after it changes nothing (409 ``account_changed``) and
  does not bring the caller's ended session back, with its old groups;
- a login's hash upgrade does not write the old password back over a reset.

Each race is made certain rather than likely: the app's own hashing (``HeldHashing``)
holds the first request at its hash until the other request has been answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher, profiles
from bson import ObjectId

from transom_socketio.auth.passwords import Passwords
from transom_socketio.auth.revocations import COLLECTION as REVOKED
from transom_socketio.testing.clients import Api, User, replace_service

ADMIN_USERS = "/api/v1/admin/users"
CHANGE = "/api/v1/user/password"
NEW_PASSWORD = "a-brand-new-password"


class HeldHashing:
    """The app's password hashing (``Passwords``), whose next call of ``method`` (its
    ``hash``, or its ``verify``) waits until ``release``: the request making it is held
    there while another one runs."""

    def __init__(self, passwords: Passwords, method: str = "hash") -> None:
        self._passwords = passwords
        self._method = method
        self.reached = asyncio.Event()
        self._released = asyncio.Event()
        self._holding = True

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._passwords, name)
        if name != self._method:
            return call

        async def held(*args: Any) -> Any:
            if self._holding:
                self._holding = False
                self.reached.set()
                await self._released.wait()
            return await call(*args)

        return held

    def release(self) -> None:
        self._released.set()


def hold_hashing(app: Any) -> HeldHashing:
    held = HeldHashing(app.settings["services"].passwords)
    replace_service(app, "passwords", held)
    return held


async def in_groups(api: Api, db: Any, user: User, *groups: str) -> User:
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}})
    answer = await api.login(user.username)
    assert answer.status == 200, answer.body
    return User(user.id, user.username, user.email, answer.body["token"], user.password)


async def held_change(api: Api, held: HeldHashing, user: User) -> asyncio.Future[Any]:
    """The user's password change, started and held at its hash."""
    body = {"current_password": user.password, "new_password": NEW_PASSWORD}
    change = asyncio.ensure_future(api.request("POST", CHANGE, body, token=user.token))
    await asyncio.wait_for(held.reached.wait(), 20)
    return change


async def refused_after(change: asyncio.Future[Any], held: HeldHashing) -> None:
    held.release()
    changed = await change
    assert (changed.status, changed.error_code) == (409, "account_changed"), changed.body


@pytest.mark.gen_test(timeout=60)
async def test_a_demotion_during_a_password_change_stands(api, app, db):
    root = await in_groups(api, db, await api.new_user("root"), "admin")
    mallory = await in_groups(api, db, await api.new_user("mallory"), "admin")
    held = hold_hashing(app)
    change = await held_change(api, held, mallory)

    demoted = await api.request(
        "PUT", f"{ADMIN_USERS}/{mallory.id}/groups", {"groups": []}, token=root.token
    )
    assert demoted.status == 200, demoted.body
    await refused_after(change, held)

    # Her admin JWT stays ended: it cannot list users nor make her admin again.
    assert (await api.request("GET", ADMIN_USERS, token=mallory.token)).status == 401
    regrant = await api.request(
        "PUT", f"{ADMIN_USERS}/{mallory.id}/groups", {"groups": ["admin"]}, token=mallory.token
    )
    assert regrant.status == 401
    stored = await db["users"].find_one({"_id": ObjectId(mallory.id)})
    assert stored["groups"] == []
    assert (await api.login(mallory.username, NEW_PASSWORD)).status == 401
    assert (await api.login(mallory.username, mallory.password)).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_an_administrators_logout_during_a_password_change_stands(api, app, db):
    root = await in_groups(api, db, await api.new_user("root"), "admin")
    ada = await api.new_user("ada")
    held = hold_hashing(app)
    change = await held_change(api, held, ada)

    ended = await api.request("POST", f"{ADMIN_USERS}/{ada.id}/logout", token=root.token)
    assert ended.status == 200, ended.body
    await refused_after(change, held)
    assert (await api.request("GET", "/api/v1/user/me", token=ada.token)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_reset_during_a_password_change_stands(api, app, db):
    """A thief holds the victim's JWT and old password; the victim resets."""
    victim = await api.new_user("victim")
    await api.request("POST", "/api/v1/user/forgot", {"email": victim.email})
    token = await api.mailed_token(victim.email, "reset")
    held = hold_hashing(app)
    change = await held_change(api, held, victim)

    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": "the-victims-choice"}
    )
    assert reset.status == 200, reset.body
    await refused_after(change, held)
    assert (await api.request("GET", "/api/v1/user/me", token=victim.token)).status == 401
    assert (await api.login(victim.username, "the-victims-choice")).status == 200
    assert (await api.login(victim.username, NEW_PASSWORD)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_change_from_a_session_ended_before_it_read_the_user_is_refused(api, app, db):
    """The JWT was checked live, then the sessions ended, then the change read the user:
    the read shows the session ended (401), and nothing changes."""
    root = await in_groups(api, db, await api.new_user("root"), "admin")
    ada = await api.new_user("ada")
    users = app.settings["services"].users
    original_get = users.get
    checked = asyncio.Event()
    go_on = asyncio.Event()

    async def get_after_the_logout(user_id: Any) -> Any:
        checked.set()  # the JWT was authenticated: the handler reads the user now
        await go_on.wait()
        return await original_get(user_id)

    users.get = get_after_the_logout
    try:
        body = {"current_password": ada.password, "new_password": NEW_PASSWORD}
        change = asyncio.ensure_future(api.request("POST", CHANGE, body, token=ada.token))
        await asyncio.wait_for(checked.wait(), 20)
        users.get = original_get  # the logout's own reads are not held
        ended = await api.request("POST", f"{ADMIN_USERS}/{ada.id}/logout", token=root.token)
        assert ended.status == 200, ended.body
        go_on.set()
        changed = await change
    finally:
        users.get = original_get
    assert (changed.status, changed.error_code) == (401, "invalid_token"), changed.body
    assert (await api.request("GET", "/api/v1/user/me", token=ada.token)).status == 401
    assert (await api.login(ada.username, NEW_PASSWORD)).status == 401


@pytest.mark.gen_test(timeout=60)
async def test_a_login_upgrading_the_hash_does_not_undo_a_reset(api, app, db):
    """The app's hashing parameters changed since the user's hash was made, so their
    next login upgrades it: a login with the old password, racing a reset, must not
    write the old password back."""
    victim = await api.new_user("victim")
    older = PasswordHasher.from_parameters(profiles.CHEAPEST)
    weaker = PasswordHasher(
        time_cost=older.time_cost + 1,
        memory_cost=older.memory_cost,
        parallelism=older.parallelism,
        hash_len=older.hash_len,
        salt_len=older.salt_len,
    ).hash(victim.password)
    await db["users"].update_one({"_id": ObjectId(victim.id)}, {"$set": {"password_hash": weaker}})
    await api.request("POST", "/api/v1/user/forgot", {"email": victim.email})
    token = await api.mailed_token(victim.email, "reset")
    held = hold_hashing(app)

    login = asyncio.ensure_future(api.login(victim.username, victim.password))
    await asyncio.wait_for(held.reached.wait(), 20)  # verified; upgrading its hash
    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": "the-victims-choice"}
    )
    assert reset.status == 200, reset.body
    held.release()
    logged_in = await login
    assert logged_in.status == 200, logged_in.body  # its JWT is of the old epoch:
    me = await api.request("GET", "/api/v1/user/me", token=logged_in.body["token"])
    assert me.status == 401
    assert (await api.login(victim.username, victim.password)).status == 401
    assert (await api.login(victim.username, "the-victims-choice")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_a_login_that_read_the_user_before_a_reset_gets_no_jwt_outliving_its_refusal(
    api, app, db
):
    """A JWT of the epoch before a reset is refused while the record of that end of
    sessions lasts (a TTL after the reset). A login that read the user just before the
    reset and then waited (here, for the password hasher) got a JWT a TTL after its
    issue, which outlived the record by the wait: once the TTL monitor removed the
    record, the old password's session was accepted again (found by a review). Its JWT
    now expires a TTL after its read of the user."""
    victim = await api.new_user("victim")
    await api.request("POST", "/api/v1/user/forgot", {"email": victim.email})
    token = await api.mailed_token(victim.email, "reset")
    held = HeldHashing(app.settings["services"].passwords, "verify")
    replace_service(app, "passwords", held)

    login = asyncio.ensure_future(api.login(victim.username, victim.password))
    await asyncio.wait_for(held.reached.wait(), 20)  # the user read: the old epoch
    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": "the-victims-choice"}
    )
    assert reset.status == 200, reset.body
    await asyncio.sleep(1.5)  # the login waits for the hasher
    held.release()
    logged_in = await login
    assert logged_in.status == 200, logged_in.body
    stolen = logged_in.body["token"]
    claims = jwt.decode(stolen, options={"verify_signature": False})
    ended = await db[REVOKED].find_one({"_id": f"user:{victim.id}"})
    refused_until = ended["expires_at"].replace(tzinfo=dt.UTC).timestamp()
    assert claims["exp"] <= refused_until  # no moment when the record is gone and it is not
    ttl = app.settings["services"].settings.jwt_ttl_seconds
    assert claims["exp"] - claims["iat"] < ttl
    assert logged_in.body["expires_in"] < ttl  # what is left of its life, as it is
    assert (await api.request("GET", "/api/v1/user/me", token=stolen)).status == 401
