"""This app's account routes: password reset and change, and the administration API's
door. Mail comes from the development outbox (``api.mailed_token``); every rule behind
these routes is tested in the engine."""

from __future__ import annotations

import pytest
from transom_socketio.testing.clients import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


@pytest.mark.gen_test(timeout=30)
async def test_a_reset_by_the_mailed_link_ends_every_session(api, sockets):
    user = await api.new_user("ada")
    socket = await sockets.connect(await api.socket_token(user))
    for email in (user.email, "nobody@example.com"):
        asked = await api.request("POST", "/api/v1/user/forgot", {"email": email})
        assert (asked.status, asked.body) == (202, {"success": True})

    token = await api.mailed_token(user.email, "reset")
    reset = await api.request(
        "POST", "/api/v1/user/reset", {"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status == 200
    assert (await api.request("GET", "/api/v1/user/me", token=user.token)).status == 401
    await socket.disconnected.wait()
    assert (await api.login("ada")).status == 401
    assert (await api.login("ada", NEW_PASSWORD)).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_changing_the_password_keeps_this_session(api):
    user = await api.new_user("bob")
    changed = await api.request(
        "POST",
        "/api/v1/user/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token=user.token,
    )
    assert changed.status == 200
    assert (await api.request("GET", "/api/v1/user/me", token=user.token)).status == 200
    assert (await api.login("bob", NEW_PASSWORD)).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_only_administrators_reach_the_admin_api(api, db):
    user = await api.new_user("cleo")
    assert (await api.request("GET", "/api/v1/admin/users")).status == 401
    refused = await api.request("GET", "/api/v1/admin/users", token=user.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")

    await db["users"].update_one({"username": "cleo"}, {"$set": {"groups": ["admin"]}})
    admin = (await api.login("cleo")).body["token"]  # a JWT carries the groups of its login
    listed = await api.request("GET", "/api/v1/admin/users", token=admin)
    assert [u["username"] for u in listed.body["users"]] == ["cleo"]
