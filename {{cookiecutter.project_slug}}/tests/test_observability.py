"""Operations: Prometheus metrics that move with use, and JSON logs without secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.project_slug }} import logs
from {{ cookiecutter.project_slug }} import registry as keys

from .support import PASSWORD


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
