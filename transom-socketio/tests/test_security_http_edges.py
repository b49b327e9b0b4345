"""Issue 20: the HTTP server's edges.

- Half-open requests were kept for an hour (Tornado's default): a client that sends
  its headers slowly, or stops in the middle of a body, now loses its connection after
  HTTP_IDLE_TIMEOUT_SECONDS / HTTP_BODY_TIMEOUT_SECONDS (server.py), as does a
  kept-alive connection left idle. Tested against the real process (``python -m``).
- Every response named ``TornadoServer/6.6.1``, the exact release the fast path is
  built for: no response names the server now, on any kind of route.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from typing import Any

import pytest
import tornado.websocket
from test_main import LISTENING, START_TIMEOUT, Server
from tornado.httpclient import HTTPRequest

from transom_socketio.web.base import BaseHandler

TIMEOUT = 1  # HTTP_IDLE_TIMEOUT_SECONDS and HTTP_BODY_TIMEOUT_SECONDS in the test
# How much later than its timeout a connection may be closed on a loaded machine: the
# point is "seconds", not Tornado's default hour.
SLACK = 9.0


@pytest.fixture(scope="module")
def server_address() -> Any:
    server = Server(
        PORT="0",
        HOST="127.0.0.1",
        APP_ENV="test",
        HTTP_IDLE_TIMEOUT_SECONDS=str(TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    try:
        url = server.wait_for(LISTENING, START_TIMEOUT).group(1)
        address = urllib.parse.urlsplit(url)
        yield (address.hostname, address.port)
    finally:
        server.kill()


def seconds_until_closed(address: Any, chunks: list[bytes], every: float = 0.2) -> float:
    """Connect, send ``chunks`` one at a time ``every`` seconds apart (then nothing), and
    return how long after the first byte the server closed the connection."""
    connection = socket.create_connection(address, timeout=TIMEOUT + SLACK + 5)
    started = time.monotonic()
    try:
        connection.settimeout(every)
        for chunk in chunks:
            try:
                connection.sendall(chunk)
            except OSError:  # closed while we were still sending
                return time.monotonic() - started
            try:
                if connection.recv(65536) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
        connection.settimeout(TIMEOUT + SLACK + 5)
        while connection.recv(65536) != b"":
            pass  # a response to read first (keep-alive): then the idle wait
        return time.monotonic() - started
    except (ConnectionResetError, TimeoutError):
        return time.monotonic() - started
    finally:
        connection.close()


def test_a_client_sending_its_headers_slowly_is_cut_off(server_address):
    # A header line every 0.2 s for a minute: a slow-loris never finishes its headers.
    headers = [b"GET /health HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % n for n in range(300)]
    elapsed = seconds_until_closed(server_address, headers)
    assert elapsed < TIMEOUT + SLACK, elapsed


@pytest.mark.parametrize(
    "path",
    ["/api/v1/user/login", "/socket.io/?EIO=4&transport=polling&sid=nosuchsession"],
)
def test_a_client_stopping_in_the_middle_of_a_body_is_cut_off(server_address, path):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    # Ten bytes of a thousand, then a byte every 0.2 s (never the rest).
    chunks = [head.encode() + b'{"username"'] + [b" "] * 300
    elapsed = seconds_until_closed(server_address, chunks)
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_a_client_stopping_in_the_middle_of_a_chunked_body_is_cut_off(server_address):
    # No Content-Length: the body's end is its last chunk, which never comes.
    head = (
        "POST /api/v1/user/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [head.encode() + b'a\r\n{"username\r\n'] + [b"1\r\n \r\n"] * 300
    elapsed = seconds_until_closed(server_address, chunks)
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_an_idle_kept_alive_connection_is_closed(server_address):
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    elapsed = seconds_until_closed(server_address, [request])
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_a_complete_request_is_answered(server_address):
    connection = socket.create_connection(server_address, timeout=10)
    try:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    finally:
        connection.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"\r\nserver:" not in answer.lower()


class Failing(BaseHandler):
    async def get(self) -> None:
        raise RuntimeError("a bug")


@pytest.mark.gen_test(timeout=30)
async def test_no_response_names_the_server(app, api, base_url):
    app.wildcard_router.add_rules([(r"/api/v1/failing", Failing)])
    user = await api.new_user()
    ok_json = {"Content-Type": "application/json"}
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/", {}, None),  # the demo page
        ("GET", "/static/app.js", {}, None),  # a static file
        ("GET", "/static/nope.js", {}, None),  # a missing one
        ("GET", "/health", {}, None),
        ("GET", "/metrics", {}, None),
        ("GET", "/api/v1/openapi.json", {}, None),
        ("GET", "/api/v1/user/me", {"Authorization": f"Bearer {user.token}"}, None),
        ("GET", "/api/v1/user/me", {}, None),  # 401
        ("POST", "/api/v1/user/login", ok_json, b"{"),  # 400
        ("POST", "/api/v1/user/signup", ok_json, b"x" * 70_000),  # 413
        ("DELETE", "/health", {}, None),  # 405
        ("GET", "/nope", {}, None),  # 404
        ("GET", "/api/v1/nope", {}, None),
        ("GET", "/api/v1/failing", {}, None),  # 500
        ("GET", "/socket.io/?EIO=4&transport=polling", {}, None),  # a new session
        ("GET", "/socket.io/?EIO=4&transport=polling&sid=nosuchsession", {}, None),  # 400
        ("GET", "/socket.io/?EIO=4&transport=polling&sid=&sid=x", {}, None),  # refused, 400
        ("OPTIONS", "/socket.io/?EIO=4&transport=polling", {}, None),
    ]
    statuses = []
    for method, path, headers, body in requests:
        response = await api.http.fetch(
            HTTPRequest(
                base_url + path,
                method=method,
                headers=headers,
                body=body,
                allow_nonstandard_methods=True,
            ),
            raise_error=False,
        )
        statuses.append(response.code)
        assert "Server" not in response.headers, (method, path, response.headers["Server"])
    assert {200, 400, 401, 404, 405, 413, 500} <= set(statuses), statuses
    # The WebSocket's upgrade answer (101) too.
    url = base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    connection = await tornado.websocket.websocket_connect(url)
    try:
        assert "Server" not in connection.headers
        assert json.loads((await connection.read_message())[1:])["sid"]
    finally:
        connection.close()
