"""With SMTP_URL set, account mail goes out over SMTP: here to a real SMTP server on
127.0.0.1 (the ``smtp_server`` fixture), whose links the test follows."""

from __future__ import annotations

import pytest
from transom_socketio.testing.clients import PASSWORD
from transom_socketio.testing.smtp import link_in


@pytest.fixture
def settings_overrides(smtp_server):
    return {"smtp_url": smtp_server.url, "public_url": "https://app.example.test"}


@pytest.mark.gen_test(timeout=30)
async def test_sign_up_mails_a_link_that_verifies_the_address(api, smtp_server):
    created = await api.signup(email="ada@example.com", password=PASSWORD, username="ada")
    assert created.status == 201
    assert (await api.login("ada")).error_code == "email_not_verified"

    (mail,) = await smtp_server.wait_for("ada@example.com")
    link = link_in(mail, "/verify?token=")
    assert link.startswith("https://app.example.test/verify?token=")
    verified = await api.request(
        "POST", "/api/v1/user/verify", {"token": link.split("token=", 1)[1]}
    )
    assert verified.status == 200
    assert (await api.login("ada")).status == 200
