"""``python -m example_app`` (``transom_socketio.cli.main``) as a user runs it: start,
serve, stop, refuse."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# The folder holding example_app (and no .env).
PROJECT_ROOT = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (http://[^\s:]+:\d+)")
START_TIMEOUT = 20.0


def environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without database or secret settings, plus ``overrides``.

    Variables set to "" count as unset, and they win over the project's ``.env``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "JWT_"))}
    env.update({"MONGODB_URI": "", "PYTHONUNBUFFERED": "1", **overrides})
    return env


def run_to_exit(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this suite's own arguments)
        [sys.executable, "-m", "example_app", *args],
        cwd=PROJECT_ROOT,
        env=environment(**overrides),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


class Server:
    """The app in a child process, with its log lines collected as they arrive."""

    def __init__(self, **overrides: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "example_app"],
            cwd=PROJECT_ROOT,
            env=environment(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._incoming: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._incoming.put(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], within: float) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self._incoming.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self._incoming.empty():
                    break
                continue
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}; got {self.lines}")

    def drain(self) -> None:
        while not self._incoming.empty():
            self.lines.append(self._incoming.get())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_serves_health_and_exits_0_on_sigint(event_loop):
    server = Server(
        PORT="0", HOST="127.0.0.1", APP_ENV="test", LOG_LEVEL="INFO", EVENT_LOOP=event_loop
    )
    try:
        listening = server.wait_for(LISTENING, START_TIMEOUT)
        assert listening.string.rstrip().endswith(f"event loop {event_loop})")
        url = listening.group(1)
        with urllib.request.urlopen(url + "/health", timeout=5) as response:  # noqa: S310
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok", "mongo": "ok"}

        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=10) == 0
        server.drain()
        embedded = [line for line in server.lines if "embedded database" in line.lower()]
        assert len(embedded) == 1, server.lines
        assert "memory" in embedded[0]
        assert not any("Traceback" in line for line in server.lines), server.lines
    finally:
        server.kill()


def test_a_bad_setting_exits_non_zero_with_one_line_naming_it():
    result = run_to_exit(PORT="abc", APP_ENV="test")
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert "PORT" in output[0]


def test_production_without_mongodb_uri_exits_non_zero_naming_it():
    result = run_to_exit(APP_ENV="production", JWT_SECRET="p" * 48)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert "MONGODB_URI" in output[0]


def test_workers_without_redis_url_exit_non_zero_naming_it():
    # Redis is chosen at run time: without REDIS_URL the rooms live in one process.
    result = run_to_exit(
        "--workers", "2", APP_ENV="test", MONGODB_URI="mongodb://127.0.0.1:1/", REDIS_URL=""
    )
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert "REDIS_URL" in output[0]


def test_a_port_in_use_exits_non_zero_with_one_line_naming_host_and_port():
    """Found by a review: a PORT already in use, or a HOST that is not this machine's,
    stopped start-up with a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host in ("127.0.0.1", "no-such-host.invalid"):
            result = run_to_exit(PORT=str(port), HOST=host, APP_ENV="test", LOG_LEVEL="WARNING")
            assert result.returncode == 2
            output = (result.stdout + result.stderr).strip().splitlines()
            assert len(output) == 1, output
            assert output[0].startswith(f"error: HOST/PORT: cannot listen on {host}:{port} (")


def test_an_unusable_data_dir_exits_non_zero_with_one_line_naming_it(tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    result = run_to_exit(PORT="0", APP_ENV="development", DATA_DIR=str(a_file))
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith(f"error: DATA_DIR: cannot use {a_file / 'db'} for the database")


def test_development_data_is_readable_by_its_owner_only(tmp_path):
    """Found by a review: the database folder was created 0755, its files 0644 (password
    hashes, the development outbox's live links)."""
    server = Server(PORT="0", HOST="127.0.0.1", APP_ENV="development", DATA_DIR=str(tmp_path))
    try:
        server.wait_for(LISTENING, START_TIMEOUT)
        assert stat.S_IMODE((tmp_path / "db").stat().st_mode) == 0o700
    finally:
        server.kill()


def test_development_on_an_address_others_can_reach_is_warned_about(tmp_path):
    # Bound to every interface for a moment: the case the warning is for.
    server = Server(PORT="0", HOST="0.0.0.0", APP_ENV="development", DATA_DIR=str(tmp_path))  # noqa: S104
    try:
        warning = server.wait_for(re.compile(r"WARNING.*APP_ENV=development on 0\.0\.0\.0"), 20)
        assert "/dev/mail" in warning.string
    finally:
        server.kill()


def development_on_loopback(tmp_path, public_url: str) -> Server:
    return Server(
        PORT="0", HOST="127.0.0.1", APP_ENV="development", DATA_DIR=str(tmp_path),
        PUBLIC_URL=public_url,
    )  # fmt: skip


def test_development_behind_a_public_url_is_warned_about(tmp_path):
    """Found by a review: a tunnel (ngrok and the like) brings the world's requests from
    127.0.0.1 with PUBLIC_URL's host, which /dev/mail answers: nothing said so."""
    server = development_on_loopback(tmp_path, "https://abc.tunnel.example")
    try:
        warning = server.wait_for(re.compile(r"WARNING.*PUBLIC_URL on abc\.tunnel\.example"), 20)
        assert "/dev/mail" in warning.string
    finally:
        server.kill()


def test_development_on_this_machine_alone_is_not_warned_about(tmp_path):
    server = development_on_loopback(tmp_path, "http://localhost:8000")
    try:
        server.wait_for(LISTENING, START_TIMEOUT)
        time.sleep(0.5)
        server.drain()
        assert not any("WARNING" in line for line in server.lines), server.lines
    finally:
        server.kill()


def test_workers_on_a_port_in_use_exit_non_zero_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(
            "--workers",
            "2",
            APP_ENV="test",
            HOST="127.0.0.1",
            PORT=str(port),
            MONGODB_URI="mongodb://127.0.0.1:1/",
            REDIS_URL="redis://127.0.0.1:6379/0",
            LOG_LEVEL="WARNING",
        )
    assert result.returncode == 2
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith(f"error: HOST/PORT: cannot listen on 127.0.0.1:{port} (")
