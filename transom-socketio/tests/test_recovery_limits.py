"""What recovery may cost (SECURITY.md, "Recovery: what a position can and cannot get").

An attacker with one account fills the history (RECOVERY_MAX_MESSAGES messages of 2,000
characters, addressed to themselves), then opens MAX_SOCKETS_PER_USER sockets that all
recover from before the first of them and never read a byte. Each replay must stop at a
bounded amount unsent; the process's memory and ``/health`` latency stay within the
bounds SECURITY.md documents.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import re
import resource
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from transom_socketio.realtime.rooms import NAMESPACE, user_room
from transom_socketio.testing.clients import Api, Report, Sockets

BUSY_HISTORY = 10_000  # RECOVERY_MAX_MESSAGES' default
TEXT = "x" * 2000  # the longest message text
SILENT_SOCKETS = 20  # MAX_SOCKETS_PER_USER's default
# What the silent sockets may add to the process's memory. Unbounded, the replays held
# their whole history each: ~45 MB a socket, 700 MB for the 20 (issue 20).
MAX_GROWTH_BYTES = 48 * 1024 * 1024
# The slowest /health answer while the replays run. Unbounded, a replay kept the event
# loop for 0.37 s at a time and /health waited 2.2 to 2.6 s (once answering 503). Bounded,
# the slowest was 0.3 s, and 0.7 s on a machine with 12 processes running per core.
MAX_HEALTH_SECONDS = 1.5


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to (net.ipv4.tcp_wmem), 4 MB by default."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            return int(wmem.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def masked_text_frame(payload: bytes) -> bytes:
    """A client's WebSocket text frame (RFC 6455 §5.2: clients mask)."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    else:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + masked


async def silent_socket(base_url: str, auth: dict[str, str]) -> socket.socket:
    """A WebSocket that sends its Socket.IO CONNECT and then never reads: its receive
    buffer is as small as the kernel allows, so the server's writes back up at once."""
    url = urlsplit(base_url)
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await loop.sock_connect(raw, (url.hostname, url.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(raw, request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await loop.sock_recv(raw, 1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    await loop.sock_sendall(raw, masked_text_frame(b"40" + json.dumps(auth).encode()))
    return raw


async def read_out(raw: socket.socket, within: float = 5.0) -> tuple[bytes, bool]:
    """Everything the server sent (read at last), and whether it closed the connection."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(raw, 1 << 16), within)
        except (TimeoutError, ConnectionResetError):
            return bytes(received), False
        if not chunk:
            return bytes(received), True
        received += chunk


RECOVERY = re.compile(rb'42\["recovery",(\{[^}]*\})\]')


@pytest.fixture
def silent() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for raw in opened:
        raw.close()


async def health_latencies(api: Api, stop: asyncio.Event, into: list[tuple[float, int]]) -> None:
    """/health's answers, every 50 ms: (seconds taken, status)."""
    while not stop.is_set():
        started = time.monotonic()
        response = await api.request("GET", "/health")
        into.append((time.monotonic() - started, response.status))
        await asyncio.sleep(0.05)


async def rss_peak(stop: asyncio.Event, into: list[int]) -> None:
    while not stop.is_set():
        into.append(rss_bytes())
        await asyncio.sleep(0.02)


async def loop_turns(stop: asyncio.Event, into: list[float]) -> None:
    """How long each turn of the event loop took (what every other request waits)."""
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(0)
        into.append(time.monotonic() - started)
        await asyncio.sleep(0.005)


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


@pytest.mark.gen_test(timeout=300)
# A shorter stall than the default 10 s only shortens the test: what a silent socket
# costs while it stalls does not depend on it.
@pytest.mark.parametrize("settings_overrides", [{"recovery_stall_seconds": 4}])
async def test_silent_recovering_sockets_leave_memory_and_health_within_bounds(
    app, api, base_url, registry, silent, report: Report
):
    if kernel_send_buffer_max() * 2 > BUSY_HISTORY * len(TEXT):
        pytest.skip("this kernel's socket buffers would take a whole replay: nothing to bound")
    sio = app.settings["services"].socket_server
    msg = registry["transomMsgClient"]
    attacker = await api.new_user()
    token = await api.request("POST", "/api/v1/user/sockettoken", token=attacker.token)
    start = token.body["position"]
    for first in range(0, BUSY_HISTORY, 100):
        await asyncio.gather(
            *(
                msg.emitToUsers(attacker.id, "message", {"n": n, "text": TEXT})
                for n in range(first, first + 100)
            )
        )
    gc.collect()
    baseline = rss_bytes()
    stop = asyncio.Event()
    answers: list[tuple[float, int]] = []
    samples: list[int] = []
    turns: list[float] = []
    watchers = [
        asyncio.ensure_future(health_latencies(api, stop, answers)),
        asyncio.ensure_future(rss_peak(stop, samples)),
        asyncio.ensure_future(loop_turns(stop, turns)),
    ]
    started, cpu_before = time.monotonic(), cpu_seconds()
    try:
        for _ in range(SILENT_SOCKETS):
            socket_token = await api.socket_token(attacker)
            silent.append(await silent_socket(base_url, {"token": socket_token, "position": start}))
        room = user_room(attacker.id)
        deadline = time.monotonic() + 30
        while sio.manager.room_size(NAMESPACE, room) < SILENT_SOCKETS:
            assert time.monotonic() < deadline, "the silent sockets did not all connect"
            await asyncio.sleep(0.05)
        recovery = sio.handshake.recovery
        for _ in range(1200):  # every replay cut off, or refused
            if not recovery.replaying:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.gather(*watchers)
    cpu = cpu_seconds() - cpu_before
    growth = max(samples) - baseline
    slowest = max(seconds for seconds, _status in answers)
    # What each silent socket got, read at last: its replay cut off, or none at all.
    read = await asyncio.gather(*(read_out(raw) for raw in silent))
    summaries = [RECOVERY.search(received) for received, _closed in read]
    outcomes = [
        (json.loads(found.group(1)) if found else None, closed)
        for found, (_received, closed) in zip(summaries, read, strict=True)
    ]
    refused = outcomes.count(({"complete": False, "count": 0}, False))
    cut_off = sum(1 for summary, closed in outcomes if summary and summary["complete"] and closed)
    # (The largest that reached a client: what the kernel's buffers took, a few MB on
    # loopback, which is not the process's memory.)
    largest = max(len(received) for received, _closed in read)
    report(
        f"{SILENT_SOCKETS} silent sockets recovering {BUSY_HISTORY} messages: RSS +"
        f"{growth / 2**20:.0f} MB (bound {MAX_GROWTH_BYTES / 2**20:.0f}), slowest /health "
        f"{slowest:.2f} s of {len(answers)} (bound {MAX_HEALTH_SECONDS}), longest loop turn "
        f"{max(turns) * 1000:.0f} ms, {cpu:.1f} s of CPU in {time.monotonic() - started:.1f} s; "
        f"{cut_off} replays cut off "
        f"(the largest after {largest / 2**20:.1f} MB reached the client), {refused} refused"
    )
    assert growth < MAX_GROWTH_BYTES
    assert slowest < MAX_HEALTH_SECONDS
    assert all(status == 200 for _seconds, status in answers)
    # Each socket was told its replay's size and cut off once it took nothing more, or
    # was refused a replay (the per-user limits) and told it is incomplete.
    assert cut_off > 0 and cut_off + refused == SILENT_SOCKETS, outcomes
    for raw in silent:
        raw.close()
    deadline = time.monotonic() + 30
    while sio.manager.room_size(NAMESPACE, room):
        assert time.monotonic() < deadline, "the silent sockets' sessions did not end"
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=120)
@pytest.mark.parametrize("settings_overrides", [{"recovery_max_unsent_bytes": 16 * 1024}])
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_reading_socket_recovers_a_replay_many_times_the_bound(
    api, base_url, registry, sockets: Sockets, transport, report: Report
):
    """Backpressure, not a cap: a replay of 300 messages of 2,000 characters (40 times
    RECOVERY_MAX_UNSENT_BYTES) waits for the socket's transport again and again, and
    a client that reads gets all of it, once and in order, on either transport (on
    long-polling a few packets per poll: python-engineio's client refuses more than 16
    in one answer)."""
    msg = registry["transomMsgClient"]
    user = await api.new_user()
    token = await api.request("POST", "/api/v1/user/sockettoken", token=user.token)
    tab = await sockets.connect(await api.socket_token(user))
    for n in range(300):
        await msg.emitToUsers(user.id, "message", {"n": n, "text": TEXT})
    await tab.wait_for("message", 300, within=60)  # delivered: in what a recovery reads
    socket = sockets.new("recovery")
    auth = {"token": token.body["token"], "position": token.body["position"]}
    started = time.monotonic()
    await socket.client.connect(base_url, auth=auth, transports=[transport], wait_timeout=10)
    assert await socket.wait_for("recovery") == [{"complete": True, "count": 300}]
    received = await socket.wait_for("message", 300, within=60)
    assert [message["n"] for message in received] == list(range(300))
    await msg.emitToUsers(user.id, "message", {"n": 300, "text": "live"})
    await socket.wait_for("message", 301)
    report(f"{transport}: 300 messages (600 KB) replayed in {time.monotonic() - started:.1f} s")


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"recoveries_per_minute_per_user": 4}])
async def test_recoveries_past_the_users_rate_connect_without_a_replay(
    api, registry, sockets: Sockets
):
    """RECOVERIES_PER_MINUTE_PER_USER=4 allows bursts of 2: the third recovery in a row
    is answered complete=false with no replay, and its socket works; another user's
    recovery is not affected."""
    msg = registry["transomMsgClient"]
    user, other = await api.new_user(), await api.new_user()
    token = await api.request("POST", "/api/v1/user/sockettoken", token=user.token)
    start = token.body["position"]
    tab = await sockets.connect(await api.socket_token(other))
    await msg.emitToUsers([user.id, other.id], "message", {"text": "missed"})
    await tab.wait_for("message")  # delivered: in what a recovery reads
    summaries = []
    for _ in range(3):
        auth = {"token": await api.socket_token(user), "position": start}
        socket = await sockets.connect(auth=auth, events=("recovery",))
        summaries += await socket.wait_for("recovery")
    assert summaries == [{"complete": True, "count": 1}] * 2 + [{"complete": False, "count": 0}]
    await msg.emitToUsers(user.id, "message", {"text": "live"})
    assert (await socket.wait_for("message"))[-1] == {"text": "live"}
    auth = {"token": await api.socket_token(other), "position": start}
    theirs = await sockets.connect(auth=auth, events=("recovery",))
    assert await theirs.wait_for("recovery") == [{"complete": True, "count": 1}]
