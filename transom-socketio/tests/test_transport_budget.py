"""Issue 20, low finding: a budget on what a socket sends.

Every packet a socket sends costs the server CPU, even one it may send (a ping, a
NOOP, an event nobody handles): 20,000 junk frames cost 1.1 s of CPU, and the socket
stayed. Each engine.io session now has a token bucket of SOCKETIO_INBOUND_BURST
packets, refilled at SOCKETIO_INBOUND_PACKETS_PER_SECOND; a session that sends more
is closed with one INFO line. A normal client (pings, a few events) is never cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import tornado.websocket
from rawsocket import TRANSPORTS, Attacker, Bystanders, errors

from transom_socketio.testing.clients import Api, Sockets

CUT = "SOCKETIO_INBOUND_BURST"
JUNK = ["2", "6", '42["nobody listens",1]', "3", '42["nobody listens",{"a":[1,2,3]}]']


def with_both_fan_outs(*overrides: dict[str, Any]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "settings_overrides",
        [{"fast_fanout": fast, **o} for o in overrides for fast in (True, False)],
        ids=[f"{'fast' if fast else 'python-socketio'}" for _ in overrides for fast in (1, 0)],
    )


def cut_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if CUT in r.getMessage()]


async def flood(attacker: Attacker, frames: int) -> int:
    """Send up to ``frames`` junk packets as fast as possible; return how many went out
    before the server stopped taking them."""
    if attacker.websocket is not None:
        for sent in range(frames):
            try:
                await attacker.websocket.send(JUNK[sent % len(JUNK)])
            except tornado.websocket.WebSocketClosedError:
                return sent
        return frames
    assert attacker.polling is not None
    polling_junk = ["3", '42["nobody listens",1]']
    sent = 0
    while sent < frames:
        body = "\x1e".join(polling_junk[i % 2] for i in range(10))
        answer = await attacker.polling.post(body)
        if answer.code != 200:
            assert answer.code == 429, answer.body
            assert json.loads(answer.body)["error"]["code"] == "too_many_requests"
            assert attacker.polling.sid.encode() not in answer.body
            return sent
        sent += 10
    return sent


@with_both_fan_outs({})
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.gen_test(timeout=60)
async def test_a_socket_that_floods_the_server_is_closed_with_one_line(
    api: Api, sockets: Sockets, transport: str, caplog: Any, report: Any
) -> None:
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    attacker = await Attacker.join(api, transport)
    started = time.process_time()
    sent = await flood(attacker, 20_000)
    cpu = time.process_time() - started
    if attacker.websocket is not None:
        assert await attacker.websocket.closed_by_server()
    else:
        assert attacker.polling is not None
        assert await attacker.polling.gone()
    # Cut during the flood: after the default burst (100) and what the rate refilled
    # meanwhile (a WebSocket client writes on until it reads the close).
    assert sent < (1_000 if attacker.websocket is None else 20_000), sent
    assert len(cut_lines(caplog.records)) == 1, cut_lines(caplog.records)
    assert errors(caplog.records) == []
    await others.assert_served("still here")
    report(f"{transport}: {sent} junk packets sent before the cut, {cpu:.3f} s CPU (both ends)")


@with_both_fan_outs({"socketio_inbound_packets_per_second": 5, "socketio_inbound_burst": 10})
@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
@pytest.mark.gen_test(timeout=60)
async def test_a_client_within_its_budget_is_never_cut(
    api: Api, sockets: Sockets, transports: list[str], caplog: Any
) -> None:
    """A python-socketio client sends a burst just under the budget, then events at
    less than its rate, and answers pings (every second here) throughout: it stays
    connected and served; a second one that keeps sending faster is cut."""
    caplog.set_level(logging.INFO)
    user = await api.new_user()
    normal = sockets.new()
    await normal.client.connect(
        sockets.base_url,
        auth={"token": await api.socket_token(user)},
        transports=transports,
        wait_timeout=10,
    )
    for _ in range(6):  # the connect and the upgrade took up to 4 packets of 10
        await normal.client.emit("nobody listens", {"n": 1})
    deadline = asyncio.get_running_loop().time() + 3
    while asyncio.get_running_loop().time() < deadline:
        await normal.client.emit("nobody listens", {"n": 2})
        await asyncio.sleep(0.4)  # 2.5 a second, under the 5 of the rate
    sent = await api.request("POST", "/api/v1/db/message", {"text": "still in"}, token=user.token)
    assert sent.status == 201
    assert (await normal.wait_for("message"))[-1]["text"] == "still in"
    assert normal.client.connected
    assert cut_lines(caplog.records) == []

    greedy = sockets.new()
    await greedy.client.connect(
        sockets.base_url,
        auth={"token": await api.socket_token(user)},
        transports=transports,
        wait_timeout=10,
    )
    for _ in range(60):
        if not greedy.client.connected:
            break
        await greedy.client.emit("nobody listens", {"n": 3})
        await asyncio.sleep(0.02)  # 50 a second
    await asyncio.wait_for(greedy.disconnected.wait(), 15)
    assert len(cut_lines(caplog.records)) == 1
    assert normal.client.connected
    assert errors(caplog.records) == []
