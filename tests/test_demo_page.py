"""The demo page at ``/`` of a generated app, driven in headless Chromium.

``tests/js/demo_page.mjs`` drives the Debian ``chromium`` through playwright-core
(which downloads no browser): two users on two pages, one signs up and one logs in
through the forms (each verified first with the token of its mail in the development
outbox; tests/test_demo_accounts.py follows that link in the page), both connect
through the UI, one sends a broadcast and a direct message and the other page shows
them live; the receiver's Disconnect then Connect (with a fresh token) gets the next
one live; and a refused handshake that Connect recovers from. A full-page screenshot of
the receiving page is kept in test-artifacts/demo-page.png. The page's rooms (who is in
them, live) are tests/test_demo_rooms.py's.
"""

from __future__ import annotations

import struct

import pytest

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)
# make test's workers (pytest-xdist --dist loadgroup): the flow runs once, on one worker.
pytestmark = pytest.mark.xdist_group("demo-page")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def screenshot(artifacts_dir):
    return artifacts_dir / "demo-page.png"


@pytest.fixture(scope="module")
def demo(running_app, run_js, chromium, screenshot):
    screenshot.unlink(missing_ok=True)  # the flow writes it anew
    return run_js(
        "demo_page.mjs",
        running_app.url,
        str(screenshot),
        env={
            "CHROMIUM": chromium,
            "MAX_SOCKETS_PER_USER": str(running_app.max_sockets_per_user),
        },
    )


def test_the_page_is_served_with_a_csp_that_lets_its_own_scripts_run(demo):
    for label, page in demo["pages"].items():
        assert page["status"] == 200, (label, page["status"])
        assert page["content_type"].startswith("text/html"), (
            label,
            page["content_type"],
        )
        csp = page["csp"] or ""
        assert "script-src 'self'" in csp, (label, csp)
        assert "'unsafe-inline'" not in csp, (label, csp)
        assert page["csp_violations"] == [], (label, page["csp_violations"])
        # The vendored socket.io client and app.js ran under that policy.
        assert page["io_loaded"] is True, label
        assert page["title"].endswith("live messages"), (label, page["title"])


def test_no_console_error_no_page_error_no_failed_request(demo):
    for label, page in demo["pages"].items():
        assert page["console_errors"] == [], (label, page["console_errors"])
        assert page["page_errors"] == [], (label, page["page_errors"])
        assert page["failed_requests"] == [], (label, page["failed_requests"])
        assert page["http_errors"] == [], (label, page["http_errors"])
        assert page["notice"] == "", (label, page["notice"])


def test_sign_up_and_log_in_through_the_forms_show_the_session(demo):
    for label, page in demo["pages"].items():
        assert page["me_name"] == page["username"], (label, page)
        assert len(page["me_id"]) == 24, (label, page["me_id"])
        assert page["auth_form_hidden"] is True, label


def test_connect_through_the_ui_opens_a_websocket(demo):
    for label, page in demo["pages"].items():
        assert page["status_text"] == "connected", (label, page["status_text"])
        assert page["connect_disabled"] is True and page["disconnect_enabled"] is True, label
        # The page's default transports: long-polling first, then the upgrade.
        assert any("transport=websocket" in url for url in page["websockets"]), (
            label,
            page,
        )


def test_a_broadcast_appears_live_on_the_other_page_as_text(demo):
    message = demo["broadcast"]
    assert message["live"] == "true", message
    assert "everyone" in message["meta"], message
    assert message["direct_class"] is False, message
    assert message["meta"].startswith(demo["pages"]["sender"]["username"]), message
    # Markup in a message is shown as text, never interpreted.
    assert "<b>everyone</b> & <img src=x>" in message["text"], message
    assert message["text_child_elements"] == 0, message
    assert demo["text_after_send"] == "", "the text box is cleared after sending"


def test_a_direct_message_appears_live_on_the_addressee_page(demo):
    message = demo["direct"]
    assert message["live"] == "true", message
    assert "direct" in message["meta"] and message["direct_class"] is True, message
    # The author's own page lists it too, once.
    assert demo["sender_sees_direct"]["id"] == message["id"]


def test_disconnect_then_connect_uses_a_fresh_token(demo):
    assert demo["receiver_status_after_reconnect"] == "connected"
    assert demo["after_reconnect"]["live"] == "true", demo["after_reconnect"]


def test_a_refused_handshake_is_shown_and_connect_works_again(demo):
    retry = demo["refused_then_retry"]
    assert retry["refused_status"] == "error: INVALID_TOKEN", retry
    assert retry["connect_enabled_after_refusal"] is True, retry
    assert retry["retry_status"] == "connected", retry


def test_a_full_page_screenshot_of_the_receiving_page_is_kept(demo, screenshot):
    assert demo["screenshot"]["path"] == str(screenshot)
    assert screenshot.is_file()
    data = screenshot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 800, (width, height)
    assert len(data) > 20_000, f"{len(data)} bytes: a blank page?"
