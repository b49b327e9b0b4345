"""Issue 14: HTTP-level hardening: keep-alive after early errors, per-user write limits,
and one app per DATA_DIR."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from test_main import LISTENING, PROJECT_ROOT, START_TIMEOUT, Server, environment

# Requests answered before their handler runs (authentication, routing, body size).
EARLY_ERRORS = [
    ("POST", "/api/v1/db/message", {"Content-Type": "application/json"}, b'{"text": "hi"}', 401),
    ("GET", "/api/v1/user/me", {}, None, 401),
    ("POST", "/api/v1/nope", {"Content-Type": "application/json"}, b'{"a": 1}', 404),
    ("GET", "/nope", {}, None, 404),
    ("POST", "/api/v1/user/signup", {"Content-Type": "application/json"}, b"x" * 70_000, 413),
]


def two_requests_on_one_connection(
    base_url: str, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, str | None, int]:
    """One client connection, as a browser or ``requests`` keeps it: the error, then a
    health check. http.client reopens the connection only if told ``Connection: close``."""
    address = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        first = connection.getresponse()
        first.read()
        said = first.getheader("Connection")
        connection.request("GET", "/health")
        second = connection.getresponse()
        second.read()
        return first.status, said, second.status
    finally:
        connection.close()


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), EARLY_ERRORS)
@pytest.mark.gen_test(timeout=30)
async def test_after_an_error_answered_before_the_handler_the_connection_still_works(
    app, http_server, base_url, method, path, headers, body, status
):
    first, said, second = await asyncio.to_thread(
        two_requests_on_one_connection, base_url, method, path, headers, body
    )
    assert first == status
    assert second == 200, f"the next request on the connection failed (Connection: {said})"


@pytest.mark.parametrize("settings_overrides", [{"writes_per_minute_per_user": 4}])
@pytest.mark.gen_test
async def test_writes_per_user_are_limited_with_retry_after(api, settings_overrides):
    ada, bob = await api.new_user(), await api.new_user()
    message = {"text": "hello", "to": bob.id}
    for _ in range(2):  # bursts of half the per-minute figure
        created = await api.request("POST", "/api/v1/db/message", message, token=ada.token)
        assert created.status == 201
    refused = await api.request("POST", "/api/v1/db/message", message, token=ada.token)
    assert refused.status == 429, refused.body
    assert refused.error_code == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1
    # Limits are per user: bob still writes.
    answer = {"text": "hi", "to": ada.id}
    assert (await api.request("POST", "/api/v1/db/message", answer, token=bob.token)).status == 201


@pytest.mark.parametrize(
    "settings_overrides",
    [{"writes_per_minute_per_user": 600, "broadcasts_per_minute_per_user": 4}],
)
@pytest.mark.gen_test
async def test_broadcasts_are_limited_more_tightly_than_direct_messages(
    api, db, settings_overrides
):
    ada, bob = await api.new_user(), await api.new_user()
    statuses = [
        (await api.request("POST", "/api/v1/db/message", {"text": "all"}, token=ada.token)).status
        for _ in range(5)
    ]
    assert statuses == [201, 201, 429, 429, 429]
    direct = {"text": "just you", "to": bob.id}
    for _ in range(5):
        created = await api.request("POST", "/api/v1/db/message", direct, token=ada.token)
        assert created.status == 201
    assert await db["messages"].count_documents({"to": None}) == 2


def test_a_second_app_on_the_same_data_dir_stops_with_one_line(tmp_path: Path):
    data_dir = str(tmp_path / "data")
    first = Server(PORT="0", HOST="127.0.0.1", APP_ENV="development", DATA_DIR=data_dir)
    try:
        url = first.wait_for(LISTENING, START_TIMEOUT).group(1)
        second = subprocess.run(
            [sys.executable, "-m", "example_app"],
            cwd=PROJECT_ROOT,
            env=environment(PORT="0", APP_ENV="development", DATA_DIR=data_dir),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        assert second.returncode != 0
        output = (second.stdout + second.stderr).strip().splitlines()
        assert len(output) == 1, output
        assert "DATA_DIR" in output[0] and "in use" in output[0]
        assert "Traceback" not in second.stderr
        # The first app is unharmed.
        address = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["mongo"] == "ok"
        connection.close()
    finally:
        first.kill()
