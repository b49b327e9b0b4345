"""Issue 13, finding 2: a long-polling POST larger than SOCKETIO_MAX_MESSAGE_BYTES is
answered 413 at once, its engine.io session is closed, and nobody else notices.

Before, engine.io closed the session and then waited for the client to poll for the
CLOSE packet: an attacker who never polled again got no answer, and the body and the
session stayed in memory.
"""

from __future__ import annotations

import json
import logging

import pytest
from rawsocket import (
    Bystanders,
    RawPolling,
    RawWebSocket,
    connected_sockets,
    dropped_lines,
    errors,
)

MB = 1024 * 1024


@pytest.fixture(params=["fast fan-out", "python-socketio fan-out"])
def settings_overrides(request):
    return {"fast_fanout": request.param == "fast fan-out"}


def assert_too_large(response, sid: str, limit: int) -> None:
    assert response.code == 413, (response.code, response.body[:200])
    assert response.body.decode().find(sid) == -1
    error = json.loads(response.body)["error"]
    assert error["code"] == "payload_too_large"
    assert str(limit) in error["message"]


@pytest.mark.gen_test(timeout=60)
async def test_an_oversized_polling_post_gets_413_at_once_and_loses_its_session(
    api, sockets, settings, caplog
):
    caplog.set_level(logging.INFO)
    others = await Bystanders.join(api, sockets)
    gauge = await connected_sockets(api, 3)
    limit = settings.socketio_max_message_bytes

    for size in (MB, 10 * MB):
        attacker = await RawPolling.open(api)
        response = await attacker.post(b"4" + b"x" * size)  # with its Content-Length
        assert_too_large(response, attacker.sid, limit)
        assert await attacker.gone()

    # A chunked body has no Content-Length: it is cut off once past the limit.
    attacker = await RawPolling.open(api)

    async def produce(write):
        for _ in range(16):
            await write(b"x" * (64 * 1024))

    response = await attacker.request(
        "POST", attacker.path, body_producer=produce, headers={"Content-Type": "text/plain"}
    )
    assert_too_large(response, attacker.sid, limit)
    assert await attacker.gone()

    # An authenticated polling socket that posts too much is disconnected the same way.
    ada = await api.new_user()
    victim = await RawPolling.open(api)
    await victim.connect(await api.socket_token(ada))
    assert await connected_sockets(api, gauge + 1) == gauge + 1
    assert_too_large(await victim.post(b"4" + b"x" * MB), victim.sid, limit)
    assert await victim.gone()
    assert await connected_sockets(api, gauge) == gauge

    await others.assert_served("still here")
    dropped = dropped_lines(caplog.records)
    assert len(dropped) == 4 and all("SOCKETIO_MAX_MESSAGE_BYTES" in line for line in dropped)
    assert errors(caplog.records) == []


@pytest.mark.gen_test(timeout=60)
async def test_a_websocket_message_over_the_limit_closes_its_socket(api, sockets, settings):
    others = await Bystanders.join(api, sockets)
    ada = await api.new_user()
    attacker = await RawWebSocket.open(api.base_url)
    await attacker.connect(await api.socket_token(ada))
    await attacker.send('42["note","' + "x" * settings.socketio_max_message_bytes + '"]')
    assert await attacker.closed_by_server()
    # Tornado refused the frame by its header (1009: message too big), before reading it.
    assert attacker.connection.close_code == 1009
    assert await connected_sockets(api, 3) == 3
    await others.assert_served("still here")
