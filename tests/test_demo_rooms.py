"""The rooms of the demo page (channels ``room:<name>``), two people in headless Chromium.

``tests/js/rooms_flow.mjs`` drives the Debian ``chromium`` through playwright-core, one
browser context per person, each signed up and verified through the development outbox,
logged in and connected through the page: both join ``room:lobby`` and each lists the
other; what one says there the other sees live; one joins ``room:other`` and talks
there, and nothing of it reaches the other page (checked on the wire); the other's
connection is cut while the first talks in the lobby, and comes back in the lobby
(``auth.channels``) with what was said recovered, and talks there again; they leave the
lobby, and the first page sees it after the grace period (the app runs with
PRESENCE_GRACE_SECONDS=1); they join again, seen live, and close their page, seen
leaving. A full-page screenshot of the first page is kept in test-artifacts/demo-rooms.png.
"""

from __future__ import annotations

import pytest

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)
# make test's workers (pytest-xdist --dist loadgroup): the flow runs once, on one worker.
pytestmark = pytest.mark.xdist_group("rooms-page")

LOBBY, OTHER = "room:lobby", "room:other"


@pytest.fixture(scope="module")
def screenshot(artifacts_dir):
    return artifacts_dir / "demo-rooms.png"


@pytest.fixture(scope="module")
def flow(running_app, run_js, chromium, screenshot):
    screenshot.unlink(missing_ok=True)  # the flow writes it anew
    return run_js("rooms_flow.mjs", running_app.url, str(screenshot), env={"CHROMIUM": chromium})


@pytest.fixture(scope="module")
def ada(flow):
    return flow["pages"]["ada"]


@pytest.fixture(scope="module")
def bob(flow):
    return flow["pages"]["bob"]


def ids(members):
    return [member["id"] for member in members]


def test_both_pages_ran_clean_under_the_csp(flow):
    for label, page in flow["pages"].items():
        assert page["console_errors"] == [], (label, page["console_errors"])
        assert page["page_errors"] == [], (label, page["page_errors"])
        assert page["failed_requests"] == [], (label, page["failed_requests"])
        assert page["http_errors"] == [], (label, page["http_errors"])
        assert page["csp_violations"] == [], (label, page["csp_violations"])
        assert page["notice"] == "", (label, page["notice"])


def test_a_room_is_joined_once_connected_the_lobby_by_default(flow):
    assert flow["room_name_default"] == "lobby"
    for label, page in flow["pages"].items():
        assert page["join_disabled_before_connect"] is True, label


def test_each_person_in_the_lobby_lists_the_other(flow, ada, bob):
    assert flow["ada_alone"] == [{"id": ada["id"], "text": f"{ada['username']} (you)"}]
    # Ada's list learned of bob from the join event, bob's from the presence endpoint.
    assert flow["lobby"]["ada_sees"] == [
        {"id": ada["id"], "text": f"{ada['username']} (you)"},
        {"id": bob["id"], "text": bob["username"]},
    ]
    assert sorted(ids(flow["lobby"]["bob_sees"])) == sorted([ada["id"], bob["id"]])
    assert {"id": ada["id"], "text": ada["username"]} in flow["lobby"]["bob_sees"]


def test_what_is_said_in_the_lobby_reaches_the_other_live_in_the_room(flow, ada):
    message = flow["lobby_message"]
    assert message["live"] == "true", message
    assert message["meta"].startswith(f"{ada['username']} → {LOBBY}"), message
    assert flow["lobby_message_in_main_list"] is False


def test_a_room_the_other_is_not_in_never_reaches_their_page(flow, ada, bob):
    other = flow["other_room"]
    assert other["ada_rooms"] == [LOBBY, OTHER]
    assert other["ada_members"] == [{"id": ada["id"], "text": f"{ada['username']} (you)"}]
    assert other["ada_message"]["text"].startswith("Only for the other room")
    assert not any(text.startswith("Only for") for text in other["ada_lobby_texts"])
    assert other["bob"]["rooms"] == [LOBBY]
    assert not any(text.startswith("Only for") for text in other["bob"]["texts"])
    # Not sent at all: no message of the room, nor its join event, on bob's socket.
    assert other["bob_wire"] == []
    assert not any(event["channel"] == OTHER for event in bob["wire"])


def test_a_cut_connection_comes_back_in_its_room_and_recovers_what_was_said(flow, ada):
    recovery = flow["recovery"]
    wire = recovery["wire"]
    assert wire[0]["event"] == "recovery", wire[:3]
    assert wire[0]["payload"] == {"complete": True, "count": 2, "channels": {LOBBY: True}}
    replayed = [event for event in wire if event["event"] == "message"]
    assert [event["id"] for event in replayed] == [m["id"] for m in recovery["messages"]]
    assert all(event["channel"] == LOBBY for event in replayed)
    for message in recovery["messages"]:
        assert message["recovered"] == "true" and message["live"] == "false", message
        assert message["meta"].endswith("recovered"), message
    assert recovery["note"] == "Recovered 2 messages sent while you were disconnected."
    assert ada["id"] in ids(recovery["bob_members"])
    # And the page that came back talks in the room, live for the other.
    assert flow["bob_message"]["live"] == "true", flow["bob_message"]


def test_leaving_the_room_is_seen_by_the_other_after_the_grace_period(flow, ada, running_app):
    grace_ms = running_app.presence_grace_seconds * 1000
    leave = flow["leave"]
    assert leave["bob_rooms"] == []
    assert ids(leave["ada_members"]) == [ada["id"]]
    # Not before the grace period (the clock started before the click).
    assert leave["elapsed_ms"] >= 0.9 * grace_ms, leave


def test_a_rejoin_is_seen_live_and_closing_the_page_leaves_the_room(flow, ada, bob, running_app):
    assert sorted(ids(flow["rejoined"])) == sorted([ada["id"], bob["id"]])
    closed = flow["closed"]
    assert ids(closed["ada_members"]) == [ada["id"]]
    assert closed["elapsed_ms"] >= 0.9 * running_app.presence_grace_seconds * 1000, closed
    # The leave and join events bob's comings and goings sent ada's page, in order.
    comings = [event["event"] for event in ada["wire"] if event["user"] == bob["id"]]
    assert comings[0] == "join" and comings[-3:] == ["leave", "join", "leave"], comings


def test_a_full_page_screenshot_is_kept(flow, screenshot):
    assert flow["screenshot"]["path"] == str(screenshot)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"{len(data)} bytes: a blank page?"
