"""Recovery of missed messages (issue 16) with the real JS client.

``tests/js/recovery_flow.mjs`` runs socket.io-client 4 under node against the default
project started with ``python -m transom_app``: a socket whose transport is dropped
(``socket.io.engine.close()``) reconnects by itself with a fresh socket token and the
position of the last message it received, while messages are emitted during the gap
and during the reconnection and replay; sockets that present a malformed or unknown
position; and the app's own ``static/recovery.js`` through the same drop.
"""

from __future__ import annotations

import pytest

from .conftest import DEFAULT_SLUG

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)
# make test's workers (pytest-xdist --dist loadgroup): the flow runs once, on one worker.
pytestmark = pytest.mark.xdist_group("recovery-clients")

BAD_POSITIONS = ("malformed", "unknown", "long", "number", "object")
GAP_MESSAGES = 12
REPLAY_MESSAGES = 12


@pytest.fixture(scope="module")
def flow(running_app, run_js):
    recovery_js = running_app.project / DEFAULT_SLUG / "static" / "recovery.js"
    return run_js("recovery_flow.mjs", running_app.url, str(recovery_js))


@pytest.fixture(scope="module")
def drop(flow):
    return flow["drop"]


def test_the_socket_token_answer_gives_the_position_to_start_from(drop):
    positions = drop["token_positions"]
    assert len(positions) == 2, positions  # the first connection and the reconnection
    assert all(isinstance(p, str) and p for p in positions), positions
    # The first handshake sends the token's position; the reconnection the last received.
    assert drop["auth_sent"] == [positions[0], drop["before"]["position"]], drop["auth_sent"]


def test_every_message_carries_a_trailing_position(drop):
    messages = [e for e in drop["after_drop"] if e["event"] == "message"]
    assert messages
    for event in messages:
        assert event["argc"] == 2, event
        assert set(event["meta"]) == {"position"}, event
        assert isinstance(event["meta"]["position"], str) and event["meta"]["position"]
    positions = [e["meta"]["position"] for e in messages]
    assert len(set(positions)) == len(positions), "positions repeat"


def test_a_dropped_transport_reconnects_by_itself(drop):
    assert drop["disconnect_reason"] == "forced close"  # the transport closed under it
    assert drop["connected_during_gap"] is False
    assert drop["connected_after"] is True


def test_recovery_comes_first_complete_with_the_count_replayed(drop):
    events = drop["after_drop"]
    assert events[0]["event"] == "recovery", events[:3]
    assert [e["event"] for e in events].count("recovery") == 1, events
    result = events[0]["payload"]
    assert result["complete"] is True, result
    # Everything emitted in the gap is replayed; of what was emitted during the
    # reconnection, what came before the switch to live is replayed too.
    assert GAP_MESSAGES <= result["count"] <= GAP_MESSAGES + REPLAY_MESSAGES, result


def test_every_message_of_the_gap_and_the_replay_arrives_once_in_order(drop):
    received = [e["id"] for e in drop["after_drop"] if e["event"] == "message"]
    assert len(drop["expected"]) == GAP_MESSAGES + REPLAY_MESSAGES
    assert received == drop["expected"]
    texts = [e["text"] for e in drop["after_drop"] if e["event"] == "message"]
    assert texts[:GAP_MESSAGES] == [f"gap {i}" for i in range(GAP_MESSAGES)]
    # The direct message to another user is not replayed to this one.
    assert drop["not_for_bob"] not in received


def test_a_one_argument_handler_gets_the_same_payloads(drop):
    one = drop["one_argument"]
    assert one["count"] == GAP_MESSAGES + REPLAY_MESSAGES
    assert one["ids"] == drop["expected"]
    assert one["same_objects"] is True


def test_the_first_connection_starts_from_the_token_position(drop):
    events = drop["first_connection"]
    assert [e["event"] for e in events] == ["recovery"], events
    assert events[0]["payload"] == {"complete": True, "count": 0}, events


@pytest.mark.parametrize("case", BAD_POSITIONS)
def test_a_bad_position_connects_with_incomplete_recovery_and_no_replay(flow, case):
    outcome = flow["bad_positions"][case]
    assert outcome["outcome"] == "connected", (case, outcome)
    events = outcome["events"]
    assert events[0]["event"] == "recovery", (case, events)
    assert events[0]["payload"] == {"complete": False, "count": 0}, (case, events)
    # Nothing replayed: the next message is the live one sent after the connection.
    assert [e["id"] for e in events[1:]] == [outcome["live_id"]], (case, events)


def test_recovery_js_marks_the_replayed_messages_and_keeps_the_last_position(flow):
    rjs = flow["recovery_js"]
    assert isinstance(rjs["position_after_connect"], str), rjs
    assert rjs["received"] == [
        {"text": "rjs before", "recovered": False},
        *({"text": f"rjs gap {i}", "recovered": True} for i in range(5)),
        {"text": "rjs after", "recovered": False},
    ]
    assert rjs["recoveries"] == [
        {"complete": True, "count": 0},
        {"complete": True, "count": 5},
    ], rjs["recoveries"]
    assert rjs["last_recovery"] == {"complete": True, "count": 5}
    # The reconnection's first token request failed on the network, the second was
    # answered 429: both retried.
    assert rjs["token_errors"] == ["fetch failed", "socket token: HTTP 429"], rjs["token_errors"]
    assert rjs["position_is_the_last_received"] is True


def test_recovery_js_stops_when_the_server_refuses_the_token_request(flow):
    refused = flow["refused_token"]
    assert refused["errors"] == [{"message": "socket token: HTTP 401", "status": 401}], refused
    assert refused["refusal"] == "INVALID_TOKEN", refused
    # One request, one refusal: no retry loop against a JWT that no longer works.
    assert refused["active"] is False and refused["connected"] is False, refused
