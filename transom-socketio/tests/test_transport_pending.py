"""Issue 13, finding 5: an engine.io session that never completes Socket.IO's CONNECT is
closed after SOCKETIO_CONNECT_TIMEOUT_SECONDS, and one address holds at most
SOCKETIO_MAX_PENDING_PER_ADDRESS of them; signed-in sockets do not count.

Before, a session that answered pings but never connected stayed open for good, and
one address could open any number of them.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import tornado.httpclient
import tornado.websocket
from rawsocket import SOCKET_PATH, Bystanders, RawPolling, RawWebSocket, dropped_lines, errors


def both_fan_outs(**settings):
    """``settings_overrides`` with each fan-out path."""
    return pytest.mark.parametrize(
        "settings_overrides",
        [{"fast_fanout": True, **settings}, {"fast_fanout": False, **settings}],
        ids=["fast fan-out", "python-socketio fan-out"],
    )


@both_fan_outs(socketio_connect_timeout_seconds=1)
@pytest.mark.gen_test(timeout=60)
async def test_sessions_that_never_connect_are_closed(api, sockets, caplog):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    idle_websocket = await RawWebSocket.open(api.base_url)
    idle_polling = await RawPolling.open(api)
    # A session that connects, on time, is kept.
    signed_in = await RawWebSocket.open(api.base_url)
    await signed_in.connect(await api.socket_token(await api.new_user()))

    assert await idle_websocket.closed_by_server()
    assert await idle_polling.gone()
    dropped = dropped_lines(caplog.records)
    assert len(dropped) == 2 and all("no Socket.IO connect within 1s" in d for d in dropped)
    assert errors(caplog.records) == []
    # Past the timeout, those that connected in time are still served.
    await others.assert_served("still here")
    frame = await signed_in.next()
    assert frame.startswith("42")
    event, payload, meta = json.loads(frame[2:])
    assert [event, payload] == ["message", (await others.tabs[0].wait_for("message"))[-1]]
    assert set(meta) == {"position"}


async def refused(api) -> list[int]:
    """The statuses of a new long-polling session and a new WebSocket session."""
    polling = await api.http.fetch(
        api.base_url + SOCKET_PATH + "polling", raise_error=False, request_timeout=10
    )
    if polling.code == 429:
        body = json.loads(polling.body)
        assert body["error"]["code"] == "too_many_requests"
        assert int(polling.headers["Retry-After"]) == body["error"]["retry_after"] >= 1
    try:
        socket = await RawWebSocket.open(api.base_url)
    except tornado.httpclient.HTTPClientError as error:
        return [polling.code, error.code]
    socket.close()
    return [polling.code, 101]


@both_fan_outs(socketio_max_pending_per_address=3)
@pytest.mark.gen_test(timeout=60)
async def test_an_address_holds_a_bounded_number_of_sessions_not_connected_yet(
    api, sockets, caplog
):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)  # signed in: not counted
    pending = [await RawWebSocket.open(api.base_url) for _ in range(2)]
    pending.append(await RawPolling.open(api))
    assert await refused(api) == [429, 429]
    # JSONP long-polling, whose answers would hide a session's sid, is not served at all.
    jsonp = await api.http.fetch(
        api.base_url + SOCKET_PATH + "polling&j=0", raise_error=False, request_timeout=10
    )
    assert (jsonp.code, json.loads(jsonp.body)["error"]["code"]) == (400, "bad_request")
    ada = await api.new_user()
    await pending[0].connect(await api.socket_token(ada))  # signs in: no longer pending
    again = await RawWebSocket.open(api.base_url)  # the freed place is taken again
    assert await refused(api) == [429, 429]
    pending[1].close()  # a pending session that ends frees its place
    again.close()
    tab = await sockets.connect(await api.socket_token(ada))
    assert tab.client.connected
    await others.assert_served("still here")
    assert errors(caplog.records) == []
    assert any("sessions not connected yet" in r.getMessage() for r in caplog.records)


async def upgrade_attempt(api, polling: RawPolling) -> RawWebSocket | int:
    """A WebSocket naming ``polling``'s session that never sends the upgrade's probe
    (engine.io waits for it without a bound), or the status it was refused with."""
    url = api.base_url.replace("http", "ws", 1) + f"{SOCKET_PATH}websocket&sid={polling.sid}"
    try:
        return RawWebSocket(await tornado.websocket.websocket_connect(url))
    except tornado.httpclient.HTTPClientError as error:
        return error.code


@both_fan_outs(socketio_max_pending_per_address=3, socketio_connect_timeout_seconds=1)
@pytest.mark.gen_test(timeout=60)
async def test_websockets_that_never_complete_an_upgrade_count_and_are_closed(api, sockets, caplog):
    """Found by a review: WebSockets naming a session, never sent the probe, stayed open
    for good and counted for nothing (150 from one address, past the session's end)."""
    caplog.set_level(logging.INFO)
    ada = await api.new_user()
    session = await RawPolling.open(api)
    await session.connect(await api.socket_token(ada))  # signed in: its own place is free
    stalled = [await upgrade_attempt(api, session) for _ in range(3)]
    assert all(isinstance(s, RawWebSocket) for s in stalled), stalled
    # The three hold the address's places: no new session, no other upgrade.
    assert await refused(api) == [429, 429]
    assert await upgrade_attempt(api, session) == 429
    # Each is closed when its time is up, and its place freed.
    for attempt in stalled:
        assert isinstance(attempt, RawWebSocket)
        assert await attempt.closed_by_server()
    dropped = dropped_lines(caplog.records)
    assert len(dropped) == 3 and all("no upgrade within 1s" in d for d in dropped), dropped
    # An upgrade that completes is kept past that time, and serves the session.
    upgraded = await session.upgrade()
    await asyncio.sleep(1.5)
    with pytest.raises(asyncio.TimeoutError):
        await upgraded.next(within=0.5)  # nothing comes, and above all no close
    assert await refused(api) == [200, 101]  # it holds no place
    assert errors(caplog.records) == []
