"""Pages and their static files (web/pages.py): rendered from the app's templates,
served with the page's security headers. The template's demo page itself (the
socket.io-client it vendors, its flows in Chromium) is tested in the template."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_the_page_and_its_scripts_are_served(api):
    page = await api.request("GET", "/")
    assert page.status == 200
    html = page.body
    assert 'data-transports="polling,websocket"' in html
    for asset in ("recovery.js", "app.js", "style.css"):
        assert f"/static/{asset}" in html
        response = await api.http.fetch(f"{api.base_url}/static/{asset}", raise_error=False)
        assert response.code == 200, asset
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"socketio_transports": ("websocket",)}])
async def test_the_page_uses_the_transports_the_server_accepts(api):
    page = await api.request("GET", "/")
    assert 'data-transports="websocket"' in page.body
