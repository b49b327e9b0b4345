"""Issue 20: the client address behind proxies, one rule for everything that uses it.

With TRUSTED_PROXY_HOPS=N the address is the N-th entry from the right of
X-Forwarded-For (what the N proxies appended), never a header the client chooses
(X-Real-IP, the left of X-Forwarded-For); with 0 no header is read. Tornado's
xheaders, used before, let a client's X-Real-IP win. The REST throttles are checked in
test_throttle.py; here the rule itself, and the Socket.IO route (the per-address cap on
sessions not connected yet, the session's address binding, the handshake's rate limit).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import socketio
from rawsocket import SOCKET_PATH

from transom_socketio.testing.clients import Api, Sockets
from transom_socketio.web.application import client_address, forwarded_protocol

PEER = "127.0.0.1"


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "address"),
    [
        (None, 1, PEER),  # a request that did not come through the proxy
        ("203.0.113.7", 0, PEER),  # 0 hops: headers ignored
        ("203.0.113.7", 1, "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7", 1, "203.0.113.7"),  # the client wrote the left one
        ("198.51.100.1,203.0.113.7", 2, "198.51.100.1"),
        ("198.51.100.1, 203.0.113.7, 192.0.2.10", 2, "203.0.113.7"),  # a CDN, then nginx
        ("203.0.113.7", 2, PEER),  # fewer entries than proxies: the peer
        ("198.51.100.1, not-an-address", 1, PEER),  # what the proxy wrote is unreadable
        ("198.51.100.1, ", 1, PEER),
        ("[2001:db8::7]:4711", 1, "2001:db8::7"),  # proxies that add the port
        ("203.0.113.7:4711", 1, "203.0.113.7"),
        ("2001:DB8::7", 1, "2001:db8::7"),
    ],
)
def test_the_client_address_is_the_entry_the_trusted_proxies_appended(
    forwarded_for: str | None, hops: int, address: str
):
    assert client_address(PEER, forwarded_for, hops) == address


def test_the_scheme_is_the_one_the_nearest_proxy_received():
    assert forwarded_protocol("http", "https", 1) == "https"
    assert forwarded_protocol("http", "https, http", 1) == "http"
    assert forwarded_protocol("http", "https", 0) == "http"
    assert forwarded_protocol("http", "gopher", 1) == "http"


def forwarded(client: str, forged: str = "", real_ip: str = "") -> dict[str, str]:
    """Headers as one proxy forwards them: what the client sent, then its address."""
    headers = {"X-Forwarded-For": f"{forged}, {client}" if forged else client}
    if real_ip:
        headers["X-Real-IP"] = real_ip
    return headers


async def new_session(api: Api, headers: dict[str, str]) -> tuple[int, str]:
    """Open a long-polling engine.io session: its status and sid."""
    answer = await api.http.fetch(
        api.base_url + SOCKET_PATH + "polling", headers=headers, raise_error=False
    )
    sid = json.loads(answer.body.decode()[1:])["sid"] if answer.code == 200 else ""
    return answer.code, sid


ATTACKER = "203.0.113.7"


@pytest.mark.parametrize(
    "settings_overrides", [{"trusted_proxy_hops": 1, "socketio_max_pending_per_address": 2}]
)
@pytest.mark.gen_test(timeout=30)
async def test_the_pending_session_cap_counts_the_address_the_proxy_appended(
    api: Api, settings_overrides: Any
):
    opened = [
        await new_session(api, forwarded(ATTACKER, forged="198.51.100.1")),
        await new_session(api, forwarded(ATTACKER, real_ip="198.51.100.2")),
    ]
    assert [status for status, _ in opened] == [200, 200]
    for headers in (
        forwarded(ATTACKER, forged="198.51.100.3", real_ip="198.51.100.4"),
        forwarded(ATTACKER, forged="198.51.100.5,198.51.100.6"),
    ):
        assert (await new_session(api, headers))[0] == 429
    # Another client, even one that names the attacker's address on the left.
    assert (await new_session(api, forwarded("198.51.100.9", forged=ATTACKER)))[0] == 200


@pytest.mark.parametrize("settings_overrides", [{"socketio_max_pending_per_address": 2}])
@pytest.mark.gen_test(timeout=30)
async def test_without_trusted_proxies_the_socket_route_reads_no_header(
    api: Api, settings_overrides: Any
):
    statuses = [
        (await new_session(api, forwarded(f"198.51.100.{i}", real_ip=f"198.51.100.{50 + i}")))[0]
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]  # all from 127.0.0.1, the TCP peer


@pytest.mark.parametrize(
    "settings_overrides",
    [{"trusted_proxy_hops": 1, "socketio_ping_interval": 1, "socketio_ping_timeout": 5}],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_session_is_bound_to_the_address_the_proxy_appended(
    api: Api, settings_overrides: Any
):
    victim = "198.51.100.20"
    status, sid = await new_session(api, forwarded(victim))
    assert status == 200
    poll = SOCKET_PATH + f"polling&sid={sid}"
    for headers in (
        forwarded(ATTACKER, forged=victim),
        forwarded(ATTACKER, real_ip=victim),
        forwarded(ATTACKER, forged=victim, real_ip=victim),
    ):
        stolen = await api.http.fetch(
            api.base_url + poll, headers=headers, raise_error=False, request_timeout=10
        )
        assert stolen.code == 403, headers
    # The victim, whatever it put on the left, polls its session (a ping within 1 s).
    own = await api.http.fetch(
        api.base_url + poll,
        headers=forwarded(victim, forged=ATTACKER),
        raise_error=False,
        request_timeout=10,
    )
    assert (own.code, own.body) == (200, b"2")


@pytest.mark.parametrize(
    "settings_overrides", [{"trusted_proxy_hops": 1, "handshakes_per_minute_per_address": 2}]
)
@pytest.mark.gen_test(timeout=30)
async def test_the_handshake_rate_limit_counts_the_address_the_proxy_appended(
    api: Api, sockets: Sockets, settings_overrides: Any
):
    # HANDSHAKES_PER_MINUTE_PER_ADDRESS=2: a burst of one handshake per address.
    ada = await api.new_user("ada")

    async def handshake(headers: dict[str, str]) -> bool:
        client = sockets.new()
        try:
            await client.client.connect(
                api.base_url,
                auth={"token": await api.socket_token(ada)},
                headers=headers,
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    assert await handshake(forwarded(ATTACKER))
    assert not await handshake(forwarded(ATTACKER, forged="198.51.100.1", real_ip="198.51.100.2"))
    assert await handshake(forwarded("198.51.100.3", forged=ATTACKER))
