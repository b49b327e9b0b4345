"""The demo page and its assets are served by the app itself (no CDN needed)."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_the_page_and_its_scripts_are_served(api):
    page = await api.request("GET", "/")
    assert page.status == 200
    html = page.body
    assert 'data-transports="polling,websocket"' in html
    for asset in ("vendor/socket.io.min.js", "recovery.js", "app.js", "style.css"):
        assert f"/static/{asset}" in html
        response = await api.http.fetch(f"{api.base_url}/static/{asset}", raise_error=False)
        assert response.code == 200, asset
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    script = await api.http.fetch(f"{api.base_url}/static/vendor/socket.io.min.js")
    assert b"Socket.IO v4." in script.body


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"socketio_transports": ("websocket",)}])
async def test_the_page_uses_the_transports_the_server_accepts(api):
    page = await api.request("GET", "/")
    assert 'data-transports="websocket"' in page.body


@pytest.mark.gen_test
async def test_the_links_of_account_mails_open_the_page(api):
    # PUBLIC_URL/verify?token=... and /reset?token=...: the page reads the token.
    for path in ("/verify?token=abc", "/reset?token=abc"):
        page = await api.request("GET", path)
        assert page.status == 200, path
        assert "/static/app.js" in page.body
        assert 'data-outbox="/dev/mail"' in page.body  # development: the outbox panel


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"smtp_url": "smtp://127.0.0.1:1"}])
async def test_with_smtp_there_is_no_development_outbox(api):
    page = await api.request("GET", "/")
    assert 'data-outbox=""' in page.body
    assert (await api.request("GET", "/dev/mail")).status == 404
