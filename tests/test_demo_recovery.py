"""The demo page recovers the messages sent while its connection was cut (issue 16).

``tests/js/demo_recovery.mjs`` drives the Debian ``chromium`` through playwright-core:
a person logs in on the demo page and connects; the page's "Drop the connection" button
closes the transport, as a network failure would; while the page reconnects (its
socket-token request is held), another user sends messages through the API. Within the
recovery window the page then shows each of them once, in order, marked recovered; past
the window (more messages than RECOVERY_MAX_MESSAGES) it says recovery was incomplete
and reloads the list through the REST API. The page's own Disconnect then Connect
recovers what was sent in between as well. A screenshot of the recovered page is kept
in test-artifacts/demo-recovery.png.
"""

from __future__ import annotations

import pytest

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)
# make test's workers (pytest-xdist --dist loadgroup): the flow runs once, on one worker.
pytestmark = pytest.mark.xdist_group("recovery-clients")

GAP_MESSAGES = 8
HISTORY_PAGE = 20  # the page's GET /api/v1/db/message?limit=20


@pytest.fixture(scope="module")
def screenshot(artifacts_dir):
    return artifacts_dir / "demo-recovery.png"


@pytest.fixture(scope="module")
def demo(running_app, run_js, chromium, screenshot):
    screenshot.unlink(missing_ok=True)  # the flow writes it anew
    return run_js(
        "demo_recovery.mjs",
        running_app.url,
        str(screenshot),
        env={"CHROMIUM": chromium, "RECOVERY_MAX_MESSAGES": str(running_app.recovery_max_messages)},
    )


def messages_on_the_wire(wire):
    return [event["id"] for event in wire if event["event"] == "message"]


def recovery_and_messages(wire):
    """The events of the recovery contract (presence events are not part of it)."""
    return [event for event in wire if event["event"] in ("recovery", "message")]


def test_the_page_ran_clean(demo):
    page = demo["page"]
    assert page["console_errors"] == [], page["console_errors"]
    assert page["page_errors"] == [], page["page_errors"]
    assert page["failed_requests"] == [], page["failed_requests"]
    assert page["http_errors"] == [], page["http_errors"]
    assert page["csp_violations"] == [], page["csp_violations"]
    assert page["notice"] == "", page["notice"]


def test_the_cut_is_shown_as_a_disconnection(demo):
    # socket.io-client's reason for a transport closed under it (not "io client
    # disconnect", after which it would not reconnect by itself).
    assert demo["status_while_away"] == "disconnected (forced close)"


def test_every_message_sent_while_away_is_shown_once_in_order_marked_recovered(demo):
    within = demo["within"]
    sent = within["sent"]
    assert len(sent) == GAP_MESSAGES
    listed = within["list"]
    ids = [item["id"] for item in listed]
    assert len(ids) == len(set(ids)), "a message is listed twice"
    recovered = [item for item in listed if item["recovered"] == "true"]
    # Newest first on the page: read bottom-up, the recovered ones are in sending order.
    assert [item["id"] for item in reversed(recovered)] == sent
    for item in recovered:
        assert item["tag"] == "recovered" and item["live"] == "false", item
    assert within["note"] == f"Recovered {GAP_MESSAGES} messages sent while you were disconnected."


def test_the_page_received_each_of_them_once_on_the_wire(demo):
    within = demo["within"]
    wire = recovery_and_messages(within["wire"])
    assert wire[0]["event"] == "recovery", wire[:3]
    assert wire[0]["payload"] == {"complete": True, "count": GAP_MESSAGES}, wire[0]
    assert messages_on_the_wire(wire) == [*within["sent"], within["after"]]


def test_messages_before_and_after_the_cut_are_live_and_listed_once(demo):
    within = demo["within"]
    by_id = {item["id"]: item for item in within["list"]}
    for key in ("first", "after"):
        item = by_id[within[key]]
        assert item["live"] == "true" and item["recovered"] == "false", (key, item)
        assert item["tag"] is None, (key, item)
    # Recovery within the window needs no reload of the list.
    assert not any(r.startswith("GET /api/v1/db/message") for r in within["requests"])


def test_past_the_window_the_page_says_recovery_was_incomplete(demo, running_app):
    exceeded = demo["exceeded"]
    assert len(exceeded["sent"]) > running_app.recovery_max_messages
    assert exceeded["note"].startswith("Recovery was incomplete"), exceeded["note"]
    wire = recovery_and_messages(exceeded["wire"])
    assert wire[0]["event"] == "recovery", wire[:3]
    assert wire[0]["payload"] == {"complete": False, "count": 0}, wire[0]
    # Nothing replayed: only the live message came over the socket.
    assert messages_on_the_wire(wire) == [exceeded["live"]]


def test_past_the_window_the_page_reloads_the_list_through_the_api(demo):
    exceeded = demo["exceeded"]
    assert "GET /api/v1/db/message?limit=20" in exceeded["requests"], exceeded["requests"]
    listed = exceeded["list"]
    ids = [item["id"] for item in listed]
    assert len(ids) == len(set(ids)), "a message is listed twice"
    # The reloaded list: the newest messages, then the live one on top.
    newest = exceeded["sent"][-HISTORY_PAGE:]
    assert ids == [exceeded["live"], *reversed(newest)]
    assert not any(item["recovered"] == "true" for item in listed), listed[:3]


def test_disconnect_then_connect_recovers_what_was_sent_in_between(demo):
    step = demo["reconnect_button"]
    assert step["note"] == "Recovered 2 messages sent while you were disconnected."
    wire = recovery_and_messages(step["wire"])
    assert wire[0]["payload"] == {"complete": True, "count": 2}, wire[:3]
    assert messages_on_the_wire(wire) == step["sent"]
    recovered = [item["id"] for item in step["list"] if item["recovered"] == "true"]
    assert list(reversed(recovered)) == step["sent"]


def test_a_screenshot_of_the_recovered_page_is_kept(demo, screenshot):
    assert demo["screenshot"]["path"] == str(screenshot)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
