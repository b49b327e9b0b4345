"""The REST half of the handshake: sign up, verify the address, log in, me, socket
token, log out."""

from __future__ import annotations

import pytest
from transom_socketio.testing.clients import PASSWORD


@pytest.mark.gen_test
async def test_signup_login_me_sockettoken_logout(api):
    created = await api.signup(email="Ada@Example.com", password=PASSWORD, username="ada")
    assert created.status == 201
    user = created.body["user"]
    assert set(user) == {
        "_id",
        "username",
        "email",
        "display_name",
        "groups",
        "verified",
        "created_at",
    }
    assert user["username"] == "ada"
    assert user["email"] == "Ada@Example.com"
    assert (user["groups"], user["verified"]) == ([], False)

    unverified = await api.login("ada")
    assert (unverified.status, unverified.error_code) == (403, "email_not_verified")
    # The verification mail, from the development outbox (GET /dev/mail).
    token = await api.mailed_token("ada@example.com", "verify")
    verified = await api.request("POST", "/api/v1/user/verify", {"token": token})
    assert (verified.status, verified.body) == (200, {"success": True})

    logged_in = await api.login("ada")
    assert logged_in.status == 200
    assert logged_in.body["token_type"] == "Bearer"
    assert logged_in.body["expires_in"] == 3600
    token = logged_in.body["token"]

    me = await api.request("GET", "/api/v1/user/me", token=token)
    assert me.status == 200
    assert me.body["me"]["_id"] == user["_id"]
    assert me.body["me"]["verified"] is True

    for method in ("GET", "POST"):
        issued = await api.request(method, "/api/v1/user/sockettoken", token=token)
        assert issued.status == 200
        assert issued.body["expires_in"] == 30
        assert len(issued.body["token"]) >= 43

    out = await api.request("POST", "/api/v1/user/logout", token=token)
    assert out.status == 200
    assert out.body == {"success": True}
    after = await api.request("GET", "/api/v1/user/me", token=token)
    assert after.status == 401
    assert after.error_code == "invalid_token"
