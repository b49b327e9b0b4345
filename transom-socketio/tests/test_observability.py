"""Operations: Prometheus metrics that move with use, and JSON logs without secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import string
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from transom_socketio import logs
from transom_socketio import registry as keys
from transom_socketio.metrics import HTTP_METHODS
from transom_socketio.testing.clients import PASSWORD
from transom_socketio.web.openapi import served_routes


async def scrape(api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.http.fetch(api.base_url + "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.gen_test(timeout=30)
async def test_metrics_move_when_the_app_is_used(api, sockets, registry):
    before = await scrape(api)
    assert value(before, "socketio_connected_sockets") == 0
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    ada_socket = await sockets.connect(await api.socket_token(ada))
    await sockets.connect(await api.socket_token(bob))
    await sockets.refused("A" * 43)
    messages = registry[keys.MESSAGE_CLIENT]
    await messages.emitToUsers([ada.id, bob.id], "ping", {})
    await messages.emitToEveryone("ping", {})

    during = await scrape(api)
    assert value(during, "socketio_connected_sockets") == 2
    assert value(during, "socketio_handshakes_total", result="accepted", reason="") == 2
    assert value(during, "socketio_handshakes_total", result="refused", reason="invalid_token") == 1
    assert value(during, "socket_tokens_issued_total") == 2
    assert value(during, "socketio_emits_total", kind="users") == 1
    assert value(during, "socketio_emit_recipients_total", kind="users") == 2
    assert value(during, "socketio_emits_total", kind="everyone") == 1
    assert value(during, "socketio_emit_recipients_total", kind="everyone") == 2
    delivered = sum(value(during, "socketio_deliveries_total", path=p) for p in ("fast", "normal"))
    assert delivered >= 4
    logins = value(
        during,
        "http_request_duration_seconds_count",
        handler="LoginHandler",
        method="POST",
        status="200",
    )
    assert logins == 2
    assert value(during, "process_resident_memory_bytes") > 0

    await ada_socket.client.disconnect()
    for _ in range(50):
        if value(await scrape(api), "socketio_connected_sockets") == 1:
            break
    assert value(await scrape(api), "socketio_connected_sockets") == 1


@pytest.fixture
def json_logs():
    """Route every log line through the app's JSON formatter, as LOG_FORMAT=json does."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure_logging("INFO", "json", stream=stream)
    yield lambda: [line for line in stream.getvalue().splitlines() if line.strip()]
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.gen_test(timeout=30)
async def test_json_logs_parse_carry_ids_and_never_a_secret(api, sockets, json_logs):
    ada = await api.new_user("ada")
    wrong = await api.login("ada", "not the password")
    assert wrong.status == 401
    token = await api.socket_token(ada)
    await sockets.connect(query_token=token)
    await sockets.refused(query_token=token)  # reused: refused, and logged with its reason

    lines = json_logs()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    access = [e for e in entries if e["logger"] == "tornado.access"]
    assert access and all(e.get("request_id") for e in access)
    ids = [e["request_id"] for e in access]
    assert len(set(ids)) == len(ids), "one id per request"
    refusals = [e for e in entries if "socket handshake refused" in e["message"]]
    assert refusals and all(e.get("request_id") in ids for e in refusals)
    token_requests = [e for e in access if "/api/v1/user/sockettoken" in e["message"]]
    assert token_requests and all(e.get("user_id") == ada.id for e in token_requests)
    everything = "\n".join(lines)
    for secret in (PASSWORD, "not the password", ada.token, token):
        assert secret not in everything
    assert "token=[redacted]" in everything


def series(exposition: str) -> set[str]:
    """The series of an exposition: each sample line up to its value."""
    return {
        line.rsplit(" ", 1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


async def flood(api, requests: int, seed: int) -> None:
    """``requests`` requests with random methods (tokens Tornado accepts, then answers
    405) to known and unknown paths, 50 at a time."""
    chance = random.Random(seed)  # noqa: S311 - test data, not secrets
    paths = ["/health", "/api/v1/user/login", "/nope", "/api/v1/db/message", "/static/x"]

    def call() -> Any:
        method = "".join(chance.choices(string.ascii_uppercase, k=chance.randint(3, 12)))
        path = chance.choice(paths) + ("/" + str(chance.random()) if chance.random() < 0.5 else "")
        return api.request(method, path)

    for _ in range(requests // 50):
        answers = await asyncio.gather(*(call() for _ in range(50)))
        assert {answer.status for answer in answers} <= {404, 405}


@pytest.mark.gen_test(timeout=120)
async def test_requests_with_random_methods_and_paths_leave_the_exposition_bounded(
    api, app, registry
):
    # Issue 20: every request was labelled with its raw method; 600 requests with random
    # methods grew the exposition from 5.6 KB to 89 MB, and each scrape stalled the loop.
    await flood(api, 50, seed=1)  # every series such requests can add, once
    before = (await api.http.fetch(api.base_url + "/metrics")).body.decode()
    await flood(api, 600, seed=2)
    # And every other label a caller passes in: a handshake reason the code never uses.
    registry[keys.METRICS].handshakes.labels("refused", "x" * 1000).inc()
    registry[keys.METRICS].emits.labels("y" * 1000).inc()
    after = (await api.http.fetch(api.base_url + "/metrics")).body.decode()

    handlers = {target.__name__ for _, target, _ in served_routes(app.default_router)}
    added = series(after) - series(before)
    assert all("x" * 10 not in line and "y" * 10 not in line for line in added)
    assert len(after) < len(before) + 8_000, (len(before), len(after))
    for family in text_string_to_metric_families(after):
        for sample in family.samples:
            if "method" in sample.labels:
                assert sample.labels["method"] in HTTP_METHODS | {"other"}, sample
                assert sample.labels["handler"] in handlers | {"not_found"}, sample
                assert sample.labels["status"] in {"200", "201", "404", "405"}, sample
            if family.name in ("socketio_handshakes", "socketio_emits"):
                assert all(len(value) < 20 for value in sample.labels.values()), sample
    samples = await scrape(api)
    assert value(samples, "socketio_handshakes_total", result="refused", reason="other") == 1


METRICS_TOKEN = "metrics-" + "m" * 40
PRODUCTION = {
    "app_env": "production",
    "smtp_url": "smtp://127.0.0.1:1",
    "public_url": "https://chat.example.com",
}


@pytest.mark.parametrize("settings_overrides", [PRODUCTION])
@pytest.mark.gen_test(timeout=30)
async def test_in_production_without_metrics_token_there_are_no_metrics(api, settings_overrides):
    for headers in ({}, {"Authorization": "Bearer anything"}):
        answer = await api.request("GET", "/metrics", headers=headers)
        # The answer to a path with no route at all.
        assert (answer.status, answer.error_code) == (404, "not_found")
        assert answer.body["error"]["message"] == "no route for /metrics"


@pytest.mark.parametrize(
    "settings_overrides",
    [{**PRODUCTION, "metrics_token": METRICS_TOKEN}, {"metrics_token": METRICS_TOKEN}],
    ids=["production", "test"],
)
@pytest.mark.gen_test(timeout=30)
async def test_with_metrics_token_only_a_scraper_that_sends_it_reads_the_metrics(
    api, settings_overrides
):
    for refused in (
        {},
        {"Authorization": "Bearer " + METRICS_TOKEN[:-1]},
        {"Authorization": "Bearer " + METRICS_TOKEN + "x"},
        {"Authorization": "Basic " + METRICS_TOKEN},
        {"Authorization": METRICS_TOKEN},
        {"X-Metrics-Token": METRICS_TOKEN},
    ):
        answer = await api.request("GET", "/metrics", headers=refused)
        assert (answer.status, answer.error_code) == (401, "authentication_required"), refused
        assert "process_resident_memory_bytes" not in json.dumps(answer.body)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    scraped = await api.http.fetch(
        api.base_url + "/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN}
    )
    assert scraped.code == 200
    assert b"process_resident_memory_bytes" in scraped.body
