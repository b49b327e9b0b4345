"""Issue 13, findings 3 and 4: binary packets, reserved event names and packets that do
not decode close the socket that sent them, with one INFO line and nothing else.

Before, ``42["disconnect"]`` ran the server's disconnect handler on a socket that stayed
open (the connected-sockets gauge drifted down), ``42["connect"]`` and a 1-byte binary
frame logged ERROR tracebacks, and a binary-event header announcing billions of
attachments had every following binary frame buffered.
"""

from __future__ import annotations

import logging

import pytest
from rawsocket import (
    TRANSPORTS,
    Attacker,
    Bystanders,
    connected_sockets,
    dropped_lines,
    errors,
)


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    # Every attacker signs in with a socket token of its own.
    return {
        "fast_fanout": request.param == "fast fan-out",
        "socket_tokens_per_minute_per_user": 0,
    }


BINARY = {
    "websocket": [
        '459999999999-["x",{"_placeholder":true,"num":0}]',  # attachments announced
        '451-["x",{"_placeholder":true,"num":0}]',
        '461-[{"_placeholder":true,"num":0}]',  # a binary ACK
        b"\x00" * 1024,  # a binary frame
    ],
    "long-polling": [
        '459999999999-["x",{"_placeholder":true,"num":0}]',
        "bAAECAw==",  # engine.io's base64 binary packet
        '42["x"]\x1ebAAECAw==',  # behind a packet that would pass
    ],
    "upgraded": ['451-["x",{"_placeholder":true,"num":0}]', b"\x01\x02"],
}
RESERVED = ["connect", "connect_error", "disconnect", "disconnecting"]
RESERVED += ["newListener", "removeListener", "__disconnect_final", "*"]
MALFORMED = [
    "451-[",
    b"0",  # a 1-byte binary frame (binary, hence refused)
    "42[",
    '42["x",',
    "42" + "[" * 20_000 + "]" * 20_000,  # too deep to decode, yet under 64 KiB
    "42{}",
    "42[1]",
    "42",
    "43",
    "44{}",
    "49",
    "4x",
    "4-1",
    "x",
    "",
]


async def assert_each_dropped(api, transport, messages, caplog) -> None:
    gauge = await connected_sockets(api)
    for message in messages:
        attacker = await Attacker.join(api, transport)
        assert await connected_sockets(api, gauge + 1) == gauge + 1
        caplog.clear()
        assert await attacker.dropped_after(message), repr(message)[:60]
        # The disconnect handler ran once, when the socket closed: the gauge is right.
        assert await connected_sockets(api, gauge) == gauge, repr(message)[:60]
        assert len(dropped_lines(caplog.records)) == 1, (repr(message)[:60], caplog.text)
        assert errors(caplog.records) == [], repr(message)[:60]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.gen_test(timeout=120)
async def test_binary_packets_close_their_socket(api, sockets, caplog, transport):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    await assert_each_dropped(api, transport, BINARY[transport], caplog)
    assert all(": binary packet" in line for line in dropped_lines(caplog.records))
    await others.assert_served("after binary packets")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.gen_test(timeout=120)
async def test_reserved_event_names_close_their_socket_without_running_handlers(
    api, sockets, caplog, transport
):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    events = RESERVED if transport == "websocket" else ["disconnect", "connect"]
    await assert_each_dropped(api, transport, [f'42["{name}"]' for name in events], caplog)
    await assert_each_dropped(
        api, transport, ['42["' + name + '",{"a":1}]' for name in events], caplog
    )
    await others.assert_served("after reserved names")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.gen_test(timeout=120)
async def test_undecodable_packets_close_their_socket_with_one_info_line(
    api, sockets, caplog, transport
):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    messages = MALFORMED if transport == "websocket" else ["451-[", "42[", "4-1", "x", "42{}"]
    if transport == "long-polling":
        messages = [*messages, "2", "5", "6", "0", "4\x1e" * 20]
    await assert_each_dropped(api, transport, messages, caplog)
    await others.assert_served("after malformed packets")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.gen_test(timeout=60)
async def test_a_socketio_disconnect_ends_the_engineio_session_too(api, sockets, caplog, transport):
    # Otherwise the session, its disconnect handler already run, stays open and signed in
    # to nothing for as long as the client answers pings.
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    gauge = await connected_sockets(api)
    attacker = await Attacker.join(api, transport)
    assert await connected_sockets(api, gauge + 1) == gauge + 1
    if attacker.websocket is not None:
        await attacker.websocket.send("41")
        assert await attacker.websocket.closed_by_server()
    else:
        assert attacker.polling is not None
        assert (await attacker.polling.post("41")).code == 200
        assert await attacker.polling.gone()
    assert await connected_sockets(api, gauge) == gauge
    assert errors(caplog.records) == []
    await others.assert_served("after a disconnect")
