"""The handshake and message flow of a generated app, driven by the real JS client.

``tests/js/socket_flow.mjs`` runs socket.io-client 4 (pinned in tests/js/package.json,
from the npm registry) under node, over the websocket transport, against the default
project started with ``python -m transom_app`` on its embedded database (SPEC §7).
The script prints what it observed; the assertions are here.
"""

from __future__ import annotations

import pytest

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)

REFUSALS = (
    "reused_auth",
    "reused_query",
    "unknown",
    "unknown_query",
    "missing",
    "empty_auth",
    "empty_string",
    "null_token",
    "number_token",
    "array_token",
    "operator_token",
    "object_token",
)
PUBLIC_MESSAGE_FIELDS = {"_id", "text", "author", "to", "channel", "created_at"}


@pytest.fixture(scope="module")
def flow(running_app, run_js):
    return run_js("socket_flow.mjs", running_app.url)


def test_the_real_socket_io_client_4_ran(flow):
    assert flow["client_version"].startswith("4."), flow["client_version"]


def test_connects_with_the_token_in_the_auth_payload(flow):
    assert flow["connect_auth"]["connected"] is True, flow["connect_auth"]
    assert flow["connect_auth"]["id"]


def test_connects_with_the_token_in_the_query_string(flow):
    assert flow["connect_query"]["connected"] is True, flow["connect_query"]
    assert flow["connect_query"]["id"]


@pytest.mark.parametrize("case", REFUSALS)
def test_every_bad_token_is_refused_with_invalid_token(flow, case):
    outcome = flow["refusals"][case]
    assert outcome["connected"] is False, (case, outcome)
    assert outcome["error"] == "INVALID_TOKEN", (case, outcome)


def test_simultaneous_handshakes_with_one_token_connect_exactly_once(flow):
    race = flow["race"]
    assert len(race) == 10
    assert race.count("connected") == 1, race
    assert all(outcome in ("connected", "INVALID_TOKEN") for outcome in race), race


def test_a_direct_message_reaches_every_tab_of_the_addressee_and_the_author_only(flow):
    assert all(flow["tabs_connected"].values()), flow["tabs_connected"]
    direct = flow["direct"]
    # alice wrote to bob, who has two tabs; carol must not get it.
    assert direct["delivered"] == {
        "alice": 1,
        "bob_tab1": 1,
        "bob_tab2": 1,
        "carol": 0,
    }, direct
    payload = direct["payload"]
    assert set(payload) == PUBLIC_MESSAGE_FIELDS, payload
    assert payload == direct["stored"]
    assert payload["to"] == flow["users"]["bob"]
    assert payload["author"]["_id"] == flow["users"]["alice"]
    assert payload["author"]["username"].startswith("js_alice_")
    assert payload["text"] == "hello bob, from the JS client"
    assert isinstance(payload["created_at"], str) and payload["created_at"][:4].isdigit()


def test_a_broadcast_reaches_everyone(flow):
    broadcast = flow["broadcast"]
    assert broadcast["delivered"] == {
        "alice": 1,
        "bob_tab1": 1,
        "bob_tab2": 1,
        "carol": 1,
    }
    payload = broadcast["payload"]
    assert payload == broadcast["stored"]
    assert payload["to"] is None
    assert payload["author"]["_id"] == flow["users"]["carol"]


def test_reconnecting_with_the_spent_token_is_refused(flow):
    assert flow["reconnect_same_token"] == {
        "connected": False,
        "error": "INVALID_TOKEN",
    }


def test_reconnecting_with_a_fresh_token_works_and_receives(flow):
    fresh = flow["reconnect_fresh_token"]
    assert fresh["first"]["connected"] is True, fresh
    assert fresh["reconnected"] is True, fresh
    assert fresh["connected"] is True and fresh["new_sid"] is True, fresh
    assert fresh["tokens_fetched"] == 2, fresh  # one per handshake, as the demo page does
    assert fresh["delivered"] == 1, fresh


def test_logout_disconnects_the_sockets_opened_with_that_jwt(flow):
    logout = flow["logout"]
    assert logout["reasons"] == {
        "bob_tab1": "io server disconnect",
        "bob_tab2": "io server disconnect",
    }, logout
    assert logout["carol_still_connected"] is True
    assert logout["sockettoken_after_logout"] == 401
