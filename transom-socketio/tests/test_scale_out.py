"""Several processes sharing rooms through Redis (REDIS_URL).

Two app processes (``python -m example_app``) share one database and one Redis
channel; this test process plays a third one, a worker with no sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REDIS_URL
from example_app.channels import channels
from example_app.settings import Settings

from transom_socketio.config import load_settings
from transom_socketio.realtime.redis_queue import (
    close_write_only,
    write_only_message_client,
)
from transom_socketio.testing.clients import Api, Sockets

# The suites that use the one Redis never run at the same time (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis")

# The folder holding example_app (and no .env).
PROJECT = Path(__file__).resolve().parent


@dataclasses.dataclass
class AppProcess:
    process: subprocess.Popen
    url: str


def start_app(env: dict[str, str]) -> AppProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "example_app"],
        cwd=PROJECT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return AppProcess(process, found.group(1))
    process.wait()
    raise AssertionError("the app did not start:\n" + "".join(lines))


def shared_environment(mongodb_uri: str) -> dict[str, str]:
    """What processes of one deployment share: database, secret, Redis and its channel."""
    return {
        "REDIS_URL": REDIS_URL,
        "APP_ENV": "test",
        "PORT": "0",
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DB": f"test_{uuid.uuid4().hex[:16]}",
        "JWT_SECRET": "scale-out-" + "s" * 40,
        "REDIS_CHANNEL": f"test-{uuid.uuid4().hex}",
    }


@contextlib.contextmanager
def two_apps(env: dict[str, str]) -> Iterator[list[AppProcess]]:
    """Two processes of one deployment, stopped as the block ends."""
    started = [start_app(env), start_app(env)]
    try:
        yield started
    finally:
        for app in started:
            if app.process.poll() is None:
                app.process.terminate()
            app.process.wait(timeout=20)
            app.process.stdout.close()


@pytest.fixture
def cluster(mongodb_uri: str) -> Iterator[tuple[AppProcess, AppProcess, dict[str, str]]]:
    env = shared_environment(mongodb_uri)
    with two_apps(env) as (first, second):
        yield first, second, env


@pytest.mark.gen_test(timeout=60)
async def test_rooms_are_shared_between_processes(cluster, http_client, monkeypatch):
    process_a, process_b, env = cluster
    api_a, api_b = Api(http_client, process_a.url), Api(http_client, process_b.url)
    sockets = Sockets(process_a.url)
    try:
        ada = await api_b.new_user("ada")
        bob = await api_b.new_user("bob")
        # Both users hold sockets on process A only.
        ada_socket = await sockets.connect(await api_a.socket_token(ada))
        bob_socket = await sockets.connect(await api_a.socket_token(bob))

        # A broadcast and a direct message inserted through process B reach them on A.
        broadcast = await api_b.request(
            "POST", "/api/v1/db/message", {"text": "all"}, token=bob.token
        )
        assert broadcast.status == 201
        direct = await api_b.request(
            "POST", "/api/v1/db/message", {"text": "psst", "to": ada.id}, token=bob.token
        )
        assert direct.status == 201
        assert await ada_socket.wait_for("message", 2) == [
            broadcast.body["message"],
            direct.body["message"],
        ]
        assert await bob_socket.wait_for("message", 2) == [
            broadcast.body["message"],
            direct.body["message"],
        ]

        # A process with no sockets (this one) reaches a socket on A, then disconnects it.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        worker = write_only_message_client(
            load_settings(env_file=None, settings_class=Settings), channels
        )
        try:
            assert await worker.emitToUsers(ada.id, "message", {"text": "from a worker"}) == 1
            await ada_socket.wait_for("message", 3)
            assert ada_socket.received("message")[2] == {"text": "from a worker"}
            # And to a channel whose subscriber is on A.
            subscribed = await bob_socket.client.call("subscribe", {"channel": "room:jobs"})
            assert subscribed == {"ok": True, "presence": {"join_leave": True, "members": 1}}
            await worker.emitToChannel("room:jobs", "message", {"text": "to the room"})
            await bob_socket.wait_for("message", 3)
            assert bob_socket.received("message")[2] == {"text": "to the room"}
            await worker.disconnectUsers([ada.id])
            await asyncio.wait_for(ada_socket.disconnected.wait(), 10)
        finally:
            await close_write_only(worker)

        # Logging out through B disconnects the socket that JWT opened on A.
        out = await api_b.request("POST", "/api/v1/user/logout", token=bob.token)
        assert out.status == 200
        await asyncio.wait_for(bob_socket.disconnected.wait(), 10)
    finally:
        await sockets.close_all()


def test_the_worker_example_reaches_a_socket_on_another_process(cluster, io_loop, http_client):
    process_a, _process_b, env = cluster

    async def scenario() -> None:
        api = Api(http_client, process_a.url)
        sockets = Sockets(process_a.url)
        try:
            cyd = await api.new_user("cyd")
            cyd_socket = await sockets.connect(await api.socket_token(cyd))
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "example_app.worker",
                cyd.id,
                "job done",
                cwd=PROJECT,
                env={**os.environ, **env},
            )
            assert await worker.wait() == 0
            [message] = await cyd_socket.wait_for("message")
            assert message["text"] == "job done"
            assert message["to"] == cyd.id
            assert message["author"]["username"] == "worker"
        finally:
            await sockets.close_all()

    io_loop.run_sync(scenario, timeout=60)


def connected_by_process(metrics_pages: list[str]) -> dict[str, int]:
    """Process id -> sockets it holds, from scrapes that landed on various workers."""
    counts = {}
    for page in metrics_pages:
        pid = re.search(r'^app_process_info\{pid="(\d+)"\}', page, re.MULTILINE).group(1)
        found = re.search(r"^socketio_connected_sockets (\S+)$", page, re.MULTILINE)
        counts[pid] = int(float(found.group(1)))
    return counts


def test_workers_share_one_port_and_the_rooms(mongodb_uri, io_loop, http_client):
    env = {**os.environ, **shared_environment(mongodb_uri)}
    parent = subprocess.Popen(
        [sys.executable, "-m", "example_app", "--workers", "2"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a failed test can end it all
    )
    try:
        listening = []
        for line in parent.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                listening.append(found.group(1))
            if len(listening) == 2:
                break
        assert len(set(listening)) == 1, f"both workers serve one port: {listening}"
        url = listening[0]

        async def scenario() -> dict[str, int]:
            api = Api(http_client, url)
            sockets = Sockets(url)
            try:
                users = [await api.new_user(f"worker{number}") for number in range(10)]
                clients = [
                    await sockets.connect(await api.socket_token(user))
                    for user in users
                    for _tab in range(2)
                ]
                pages = []
                for _ in range(40):  # the kernel spreads connections: both workers answer
                    response = await http_client.fetch(url + "/metrics")
                    pages.append(response.body.decode())
                sent = await api.request(
                    "POST", "/api/v1/db/message", {"text": "to all workers"}, token=users[0].token
                )
                assert sent.status == 201
                for client in clients:
                    assert await client.wait_for("message") == [sent.body["message"]]
                return connected_by_process(pages)
            finally:
                await sockets.close_all()

        counts = io_loop.run_sync(scenario, timeout=60)
        # Two workers answered, each holding some of the twenty sockets.
        assert len(counts) == 2 and sum(counts.values()) == 20, counts
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
