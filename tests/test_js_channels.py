"""Channels (SPEC §7, "Channels") with the real JS client.

``tests/js/channels_flow.mjs`` runs socket.io-client 4 under node, twice:

- against the default project started with ``python -m transom_app`` (one process, its
  embedded database): what a generated app ships;
- against two processes of the engine's example app (``python -m example_app`` from
  transom-socketio/tests, the library's environment) sharing one database and Redis,
  with an administrator: a channel message posted through either process reaches the
  subscribers on both and nobody else; join and leave reach only subscribers, across
  processes; a socket whose transport drops reconnects to the OTHER process and gets
  its channels and their missed messages back; a user taken out of a group gets back
  only the channels still allowed.

The script prints what it observed; the assertions are here.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LIBRARY, LIBRARY_PYTHON, run

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_GRACE_SECONDS = 3  # the generated app's PRESENCE_GRACE_SECONDS
CLUSTER_GRACE_SECONDS = 2
ADMIN_PASSWORD = "admin password " + "x" * 8
START_TIMEOUT = 60.0
ADMIN_ARGUMENTS = ("--email", "root@example.com", "--username", "root")

# The engine's embedded database for the cluster, in a process of its own (the template
# tests' environment does not have the engine): its URI on stdout, until stdin closes.
DATABASE_HOLDER = """
import sys
from transom_socketio.embedded_db import IN_MEMORY, client_uri, start_embedded_database
server = start_embedded_database(IN_MEMORY)
print(client_uri(server), flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="module")
def single(running_app, run_js):
    """The flow against the default project (one process; no administrator)."""
    grace = getattr(running_app, "presence_grace_seconds", DEFAULT_GRACE_SECONDS)
    flow = run_js("channels_flow.mjs", running_app.url, env={"GRACE_MS": str(grace * 1000)})
    return {**flow, "grace_seconds": grace}


def start_example_app(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """``python -m example_app`` on a free port; its log goes to a file (a pipe nobody
    drains would block it)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(LIBRARY_PYTHON), "-m", "example_app"],
            cwd=LIBRARY / "tests",
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"listening on (http://\S+)", log_path.read_text(errors="replace"))
        if found:
            return process, found.group(1).rstrip("/")
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"example_app did not start:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """What two processes of one deployment share: a database, a secret, Redis."""
    assert LIBRARY_PYTHON.exists(), "the engine's environment (make lib-test builds it)"
    holder = subprocess.Popen(
        [str(LIBRARY_PYTHON), "-c", DATABASE_HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        uri = holder.stdout.readline().strip()
        assert uri.startswith("mongodb://"), f"no database: {uri!r}"
        yield {
            "APP_ENV": "test",
            "PORT": "0",
            "LOG_LEVEL": "INFO",
            "MONGODB_URI": uri,
            "MONGODB_DB": f"test_{uuid.uuid4().hex[:16]}",
            "JWT_SECRET": "js-channels-" + "s" * 40,
            "REDIS_URL": REDIS_URL,
            "REDIS_CHANNEL": f"test-{uuid.uuid4().hex}",
            "PRESENCE_GRACE_SECONDS": str(CLUSTER_GRACE_SECONDS),
            "SIGNUPS_PER_ADDRESS": "0",
            "MAIL_REQUESTS_PER_ADDRESS": "0",
            "TOKEN_ATTEMPTS_PER_ADDRESS": "0",
            "WRITES_PER_MINUTE_PER_USER": "0",
            "BROADCASTS_PER_MINUTE_PER_USER": "0",
        }
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=20)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        holder.stdout.close()


@pytest.fixture(scope="module")
def cluster(cluster_env, run_js, tmp_path_factory) -> dict[str, Any]:
    """The flow against two example_app processes sharing the database and Redis."""
    logs = tmp_path_factory.mktemp("js-channels")
    created = run(
        [str(LIBRARY_PYTHON), "-m", "example_app", "createadmin", *ADMIN_ARGUMENTS],
        cwd=LIBRARY / "tests",
        env={**cluster_env, "ADMIN_PASSWORD": ADMIN_PASSWORD},
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    started: list[subprocess.Popen] = []
    try:
        urls = []
        for name in ("a", "b"):
            process, url = start_example_app(cluster_env, logs / f"{name}.log")
            started.append(process)
            urls.append(url)
        env = {
            "GRACE_MS": str(CLUSTER_GRACE_SECONDS * 1000),
            "ADMIN_USERNAME": "root",
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        return run_js("channels_flow.mjs", *urls, env=env)
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The default project ----------------------------------------------------------------


@pytest.mark.xdist_group("recovery-clients")
class TestTheGeneratedApp:
    def test_the_real_socket_io_client_4_ran_against_one_process(self, single):
        assert single["client_version"].startswith("4."), single["client_version"]
        assert single["bases"]["two_processes"] is False

    def test_subscribe_is_acknowledged_or_refused(self, single):
        check_subscribe(single["subscribe"])

    def test_a_channel_message_reaches_exactly_its_subscribers(self, single):
        check_delivery(single["delivery"])

    def test_join_and_leave_reach_only_subscribers_after_the_grace_period(self, single):
        check_presence(single["delivery"], single["grace_seconds"])

    def test_a_dropped_socket_gets_its_channels_and_their_missed_messages(self, single):
        check_recovery(single["recovery"])


# Two processes ----------------------------------------------------------------------


@pytest.mark.xdist_group("queue-redis")
class TestTwoProcesses:
    def test_the_flow_ran_against_two_processes(self, cluster):
        assert cluster["bases"]["two_processes"] is True
        assert cluster["bases"]["a"] != cluster["bases"]["b"]

    def test_subscribe_is_acknowledged_or_refused(self, cluster):
        check_subscribe(cluster["subscribe"])

    def test_a_channel_message_through_either_process_reaches_exactly_its_subscribers(
        self, cluster
    ):
        check_delivery(cluster["delivery"])

    def test_join_and_leave_reach_only_subscribers_across_processes(self, cluster):
        check_presence(cluster["delivery"], CLUSTER_GRACE_SECONDS)

    def test_a_transport_dropped_on_one_process_recovers_its_channels_on_the_other(self, cluster):
        recovery = cluster["recovery"]
        check_recovery(recovery)
        # The reconnection went to the other process.
        assert [sent["base"] for sent in recovery["auth_sent"]] == [
            cluster["bases"]["a"],
            cluster["bases"]["b"],
        ]
        assert recovery["engine_port"] == recovery["port_b"], recovery

    def test_a_user_taken_out_of_a_group_gets_back_only_the_channels_still_allowed(self, cluster):
        lost = cluster["lost_rights"]
        assert lost["first_recovery"] == {
            "complete": False,
            "count": 0,
            "channels": {"group:staff": True, "room:js": True},
        }
        assert lost["disconnect_reason"] == "io server disconnect", lost
        assert lost["admin_to_staff"] == 403
        assert lost["back_first_event"] == "recovery"
        assert lost["back_recovery"] == {
            "complete": True,
            "count": 1,
            "channels": {"group:staff": False, "room:js": True},
        }
        assert lost["back_subscribe_staff"]["ok"] is False
        assert lost["back_subscribe_staff"]["error"]["code"] == "forbidden"
        assert lost["back_texts"] == ["room while away"]


# What both runs must show -----------------------------------------------------------


def in_room(ack: Any) -> bool:
    """The acknowledgement of a presence channel's subscription (``room:``): join and
    leave are sent (under the pattern's join_leave_limit), with the members' count."""
    return (
        isinstance(ack, dict)
        and set(ack) == {"ok", "presence"}
        and ack["ok"] is True
        and ack["presence"]["join_leave"] is True
        and isinstance(ack["presence"]["members"], int)
    )


def check_subscribe(out: dict[str, Any]) -> None:
    assert in_room(out["allowed"]), out["allowed"]
    assert out["again"] == out["allowed"]
    assert out["forbidden"]["ok"] is False
    assert out["forbidden"]["error"]["code"] == "forbidden"
    assert set(out["forbidden"]["error"]) == {"code", "message"}
    for name, ack in [*out["invalid"].items(), ("no_body", out["no_body"])]:
        assert ack["ok"] is False, (name, ack)
        assert ack["error"]["code"] == "invalid_channel", (name, ack)
    assert out["unsubscribe_unknown"] == {"ok": True}
    assert out["unsubscribe"] == {"ok": True}
    assert out["connected_after"] is True


def check_delivery(out: dict[str, Any]) -> None:
    assert all(in_room(ack) for ack in out["acks"]), out["acks"]
    delivered = out["delivered"]
    assert delivered["alice"] == ["js via A", "js via B"], delivered
    assert delivered["bob"] == ["js via A", "js via B"], delivered
    assert delivered["carol"] == ["other via B"], delivered
    assert delivered["dave"] == [], delivered
    assert out["channel_field"] == "room:js"
    assert out["trailing_position"] is True
    assert out["bob_unsubscribe"] == {"ok": True}
    assert out["bob_after_unsubscribe"] == ["js via A", "js via B"]


def check_presence(out: dict[str, Any], grace_seconds: int) -> None:
    names = out["usernames"]
    fields = ["_id", "display_name", "username"]

    def event(kind: str, who: str) -> dict[str, Any]:
        return {"event": kind, "channel": "room:js", "user": names[who], "fields": fields}

    assert in_room(out["erin_back"]), out["erin_back"]
    # Alice saw Bob and Erin join, and Bob leave; Erin's move within the grace period
    # was neither a leave nor a join (a move slower than the grace, on a loaded
    # machine, is both).
    alice = out["presence_events"]["alice"]
    of_bob = [e for e in alice if e["user"] == names["bob"]]
    of_erin = [e for e in alice if e["user"] == names["erin"]]
    assert len(alice) == len(of_bob) + len(of_erin), alice
    assert of_bob == [event("join", "bob"), event("leave", "bob")], alice
    if out["erin_move_ms"] < grace_seconds * 1000:
        assert of_erin == [event("join", "erin")], (out["erin_move_ms"], alice)
    else:
        assert of_erin in (
            [event("join", "erin")],
            [event("join", "erin"), event("leave", "erin"), event("join", "erin")],
        ), (out["erin_move_ms"], alice)
    assert out["leave_after_ms"] >= grace_seconds * 1000 - 100, out["leave_after_ms"]
    # Nobody outside the channel heard of it; Bob heard of Erin while he was in it,
    # and of nothing once out (not of his own leave).
    assert out["presence_events"]["carol"] == []
    assert out["presence_events"]["dave"] == []
    bob = out["presence_events"]["bob"]
    assert bob[:1] == [event("join", "erin")] and bob == of_erin[: len(bob)], bob
    expected = sorted([names["alice"], names["erin"]])
    for where in ("a", "b"):
        assert out["members"][where]["status"] == 200
        assert out["members"][where]["usernames"] == expected, out["members"]
    assert out["presence_forbidden"] == {"status": 403, "code": "forbidden"}
    assert out["presence_invalid"] == {"status": 400, "code": "invalid_channel"}


def check_recovery(out: dict[str, Any]) -> None:
    assert out["first_recovery"] == {
        "complete": True,
        "count": 0,
        "channels": {"room:js": True, "group:admin": False, "nope:x": False},
    }
    assert out["disconnect_reason"] == "forced close", out["disconnect_reason"]
    events = out["after_drop"]
    assert events[0]["event"] == "recovery", events[:3]
    assert [e["event"] for e in events].count("recovery") == 1
    summary = events[0]["payload"]
    assert summary["complete"] is True
    assert summary["channels"] == {"room:js": True, "group:admin": False, "nope:x": False}
    assert 10 <= summary["count"] <= 16, summary
    received = [e["text"] for e in events if e["event"] == "message"]
    assert received[: len(out["expected"])] == out["expected"]  # once each, in order
    assert all(text.startswith("sentinel") for text in received[len(out["expected"]) :])
    assert "not for gina" not in received
    assert out["connected_after"] is True
