"""Development answers only requests addressed to this machine (web/hosts.py): a web page
that rebinds its own domain to 127.0.0.1 (DNS rebinding) reads and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from transom_socketio.testing.clients import PASSWORD

DEVELOPMENT = {"app_env": "development"}
# Hosts a rebinding page can make the browser send (its own domain, any port).
REBOUND = ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example"]
SIGNUP = {"email": "eve@example.com", "password": PASSWORD, "username": "eve"}
# Every kind of route: the API (one that changes something), the open development
# surfaces, the documents, the page, and the Socket.IO transport.
REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/api/v1/user/signup", SIGNUP),
    ("GET", "/metrics", None),
    ("GET", "/dev/mail", None),
    ("GET", "/health", None),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/", None),
    ("GET", "/socket.io/?EIO=4&transport=polling", None),
    ("GET", "/no/such/route", None),
]


@pytest.mark.parametrize("settings_overrides", [DEVELOPMENT])
@pytest.mark.parametrize("host", REBOUND)
@pytest.mark.gen_test(timeout=30)
async def test_development_answers_no_request_addressed_to_another_host(api, db, host):
    """Found by a review: /dev/mail checked the Host, but /metrics (open without a token
    in development), the API and the pages answered a rebinding page."""
    for method, path, body in REQUESTS:
        response = await api.request(method, path, body, headers={"Host": host})
        assert response.status == 403, (path, response.status, response.body)
        assert response.body["error"]["code"] == "forbidden_host", path
    assert await db["users"].count_documents({}) == 0
    for local in ("localhost", "127.0.0.1", "[::1]:8000", "LOCALHOST:1"):
        answer = await api.request("GET", "/health", headers={"Host": local})
        assert answer.status == 200, (local, answer.body)
    signed_up = await api.request("POST", "/api/v1/user/signup", SIGNUP)
    assert signed_up.status == 201, signed_up.body


@pytest.mark.parametrize(
    "settings_overrides", [{**DEVELOPMENT, "public_url": "https://dev.example.test"}]
)
@pytest.mark.gen_test(timeout=30)
async def test_development_answers_public_urls_host_too(api):
    """PUBLIC_URL names where the developer reaches the app (a LAN address, a tunnel)."""
    answer = await api.request("GET", "/health", headers={"Host": "dev.example.test"})
    assert answer.status == 200, answer.body
    other_port = await api.request("GET", "/health", headers={"Host": "dev.example.test:8443"})
    assert other_port.status == 403, other_port.body


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {},
        {
            "app_env": "production",
            "smtp_url": "smtp://127.0.0.1:1",
            "public_url": "https://chat.example.com",
        },
    ],
    ids=["test", "production"],
)
@pytest.mark.gen_test(timeout=30)
async def test_test_and_production_answer_any_host(api):
    """Production is reached through the names its operators give it; a test's clients
    name what they like."""
    answer = await api.request("GET", "/health", headers={"Host": "chat.example.com"})
    assert answer.status == 200, answer.body
