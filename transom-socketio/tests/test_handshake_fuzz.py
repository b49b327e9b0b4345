"""Handshake fuzzing (issue 6): whatever a client sends as its token, it is refused with
INVALID_TOKEN, and the server is unaffected.

Two kinds of client: the real python-socketio client for a list of hostile tokens,
and the raw Socket.IO protocol over a WebSocket (what any client can send, e.g. an
``auth`` payload that is a bare number, which python-socketio would not send) for
payloads that hypothesis generates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import quote

import hypothesis
import pytest
import tornado.httpclient
import tornado.websocket
from hypothesis import strategies as st

from transom_socketio.testing.clients import Api, Sockets

REFUSED = [{"message": "INVALID_TOKEN"}]
NO_AUTH = object()
EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "60"))  # FUZZ_MAX_EXAMPLES=1000 digs deeper


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        # The 100 kB payloads must reach the handshake: the message size limit (64 KiB by
        # default) is tested in test_security.py. So is the handshake rate limit.
        "socketio_max_message_bytes": 256 * 1024,
        "handshakes_per_minute_per_address": 0,
    }


def hostile_tokens(real: str) -> list[Any]:
    """Tokens of every JSON type and shape; ``real`` is a live token that must survive."""
    return [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        1.5,
        1e308,
        "",
        " ",
        "a",
        "A" * 42,
        "A" * 44,
        "+" * 43,  # the wrong alphabet: standard base64, not URL-safe
        "/" * 43,
        "=" * 43,
        "é" * 43,
        "\x00" * 43,
        "A" * 42 + "\n",
        real + "\n",
        " " + real,
        real.upper() if real.upper() != real else real.lower(),
        real[:-1],
        real + real,
        "A" * 100_000,
        "🙂" * 1000,
        "' OR 1=1 --",
        "${jndi:ldap://x}",
        [],
        [real],
        [None, 1, "x"],
        {},
        {"$ne": None},
        {"$gt": ""},
        {"$regex": ".*"},
        {"$where": "1"},
        {"$exists": True},
        {"$eq": real},
        {"$in": [real]},
        {"_id": {"$ne": None}},
        {"a": {"b": {"c": {"d": [1, {"e": None}]}}}},
        json.loads("[" * 200 + "]" * 200),
    ]


async def raw_exchange(base_url: str, packet: str, query: str = "") -> str | None:
    """Open an engine.io WebSocket by hand, send one Socket.IO ``packet``; return the
    server's answer (None if it closed the connection)."""
    url = f"{base_url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket{query}"
    connection = await tornado.websocket.websocket_connect(url)
    try:
        opened = await connection.read_message()
        assert isinstance(opened, str) and opened.startswith("0"), opened
        await connection.write_message("4" + packet)  # an engine.io "message"
        reply = await asyncio.wait_for(connection.read_message(), 10)
    finally:
        connection.close()
    assert not isinstance(reply, bytes)
    return reply


async def raw_handshake(base_url: str, auth: Any = NO_AUTH, query: str = "") -> Any:
    """Socket.IO's CONNECT by hand: return the answer's packet type and data."""
    connect = "0" if auth is NO_AUTH else "0" + json.dumps(auth)
    reply = await raw_exchange(base_url, connect, query)
    assert isinstance(reply, str), f"the server closed the connection: {reply!r}"
    packet_type, data = reply[:2], json.loads(reply[2:] or "null")
    return packet_type, data


async def assert_raw_refused(base_url: str, **how: Any) -> None:
    assert await raw_handshake(base_url, **how) == ("44", REFUSED[0]), how


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=12,
    )


def operator_objects() -> st.SearchStrategy[Any]:
    operators = st.sampled_from(["$ne", "$gt", "$gte", "$lt", "$in", "$regex", "$where", "$exists"])
    return st.dictionaries(operators, json_values(), min_size=1, max_size=3)


def token_strings() -> st.SearchStrategy[str]:
    url_safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return (
        st.text(max_size=200)
        | st.text(alphabet=url_safe, min_size=40, max_size=46)  # right alphabet, near the length
        | st.text(min_size=43, max_size=43)  # right length, any alphabet
        | st.integers(min_value=1, max_value=100_000).map(lambda n: "A" * n)
    )


def in_thread(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Any:
    """Run ``coroutine`` on the test's event loop from hypothesis's worker thread."""
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)


def no_errors_logged(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]


async def assert_unaffected(api: Api, sockets: Sockets, token: str) -> None:
    """The live token survived everything above, still connects, and the app is healthy."""
    client = await sockets.connect(token)
    assert client.client.connected
    assert (await api.request("GET", "/health")).status == 200


@pytest.mark.gen_test(timeout=60)
async def test_hostile_tokens_from_the_socketio_client_are_refused(api, sockets, caplog, report):
    ada = await api.new_user("ada")
    live = await api.socket_token(ada)
    tokens = hostile_tokens(live)
    for token in tokens:
        refused = await sockets.refused(auth={"token": token})
        assert refused.connect_errors == REFUSED, repr(token)[:80]
    queries = [t if isinstance(t, str) else json.dumps(t) for t in tokens]
    for value in queries:
        if len(value) > 8000:
            continue  # the HTTP request line has its own limit; the auth payload covers these
        refused = await sockets.refused(query_token=quote(value, safe=""))
        assert refused.connect_errors == REFUSED, value[:80]
    report(f"{len(tokens)} auth tokens and {len(queries)} query tokens refused")
    assert no_errors_logged(caplog.records) == []
    await assert_unaffected(api, sockets, live)


@pytest.mark.gen_test(timeout=30 + EXAMPLES)
async def test_generated_auth_payloads_and_query_tokens_are_refused(
    api, sockets, base_url, caplog, report
):
    ada = await api.new_user("ada")
    live = await api.socket_token(ada)
    loop = asyncio.get_running_loop()
    tried = {"auth payload": 0, "auth token": 0, "query token": 0}

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        payload=json_values() | operator_objects(),
        token=json_values() | operator_objects() | token_strings(),
        query=token_strings() | json_values().map(json.dumps),
    )
    def refused(payload: Any, token: Any, query: str) -> None:
        # The whole auth payload of any JSON type (no query token either).
        in_thread(loop, assert_raw_refused(base_url, auth=payload))
        tried["auth payload"] += 1
        in_thread(loop, assert_raw_refused(base_url, auth={"token": token}))
        tried["auth token"] += 1
        in_thread(loop, assert_raw_refused(base_url, query="&token=" + quote(query[:8000])))
        tried["query token"] += 1

    await asyncio.to_thread(refused)
    report(f"generated payloads refused: {tried}")
    assert min(tried.values()) >= EXAMPLES
    assert no_errors_logged(caplog.records) == []
    # A raw client with the live token does connect: the refusals were about the tokens.
    packet_type, data = await raw_handshake(base_url, auth={"token": live})
    assert packet_type == "40" and "sid" in data
    assert (await api.request("GET", "/health")).status == 200
    await assert_unaffected(api, sockets, await api.socket_token(ada))


@pytest.mark.gen_test(timeout=30)
async def test_a_missing_token_and_repeated_query_tokens_are_refused(api, base_url):
    ada = await api.new_user("ada")
    live = await api.socket_token(ada)
    await assert_raw_refused(base_url)
    await assert_raw_refused(base_url, auth=None)
    # A repeated token is refused by the transport (400), before any handshake.
    with pytest.raises(tornado.httpclient.HTTPClientError) as repeated:
        await raw_handshake(base_url, query=f"&token={live}&token={live}")
    assert repeated.value.code == 400
    await assert_raw_refused(base_url, query=f"&token[$ne]=1&tok%65n={live[:5]}")
    # The live token was never consumed by any of those.
    packet_type, _data = await raw_handshake(base_url, query=f"&token={live}")
    assert packet_type == "40"


MALFORMED_CONNECTS = [
    "0{",
    '0{"token": }',
    "0" + "[" * 30_000 + "]" * 30_000,  # nested too deep to decode, yet under 64 KiB
    "01.5",
    "0{'token': 1}",
    "0abc",
    "0\u0000",
]
MALFORMED_OTHERS = ["2[", '2["x", ', "4{}", "9", "x"]


@pytest.mark.gen_test(timeout=30)
async def test_undecodable_packets_are_refused_or_dropped_without_an_error_logged(
    api, sockets, base_url, caplog
):
    caplog.set_level(logging.INFO)
    for connect in MALFORMED_CONNECTS:
        reply = await raw_exchange(base_url, connect)
        assert reply == "44" + json.dumps(REFUSED[0], separators=(",", ":")), connect[:20]
    for other in MALFORMED_OTHERS:
        # The server hangs up: engine.io's close packet, or the connection just closes.
        assert await raw_exchange(base_url, other) in ("1", None), other
    assert no_errors_logged(caplog.records) == []
    messages = [r.getMessage() for r in caplog.records]
    refused = [m for m in messages if m.startswith("socket handshake refused: malformed_packet")]
    dropped = [m for m in messages if m.startswith("socket dropped: malformed packet")]
    assert (len(refused), len(dropped)) == (len(MALFORMED_CONNECTS), len(MALFORMED_OTHERS))
    ada = await api.new_user("ada")
    await assert_unaffected(api, sockets, await api.socket_token(ada))
