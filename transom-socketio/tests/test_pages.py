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
