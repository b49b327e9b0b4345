"""A baked default project, installed and running, for the tests driven by real
external clients (tests/js: socket.io-client under node, the demo page in Chromium).

Used as a pytest plugin (``pytest_plugins = ("tests.running_app",)`` in a test
module) so the session fixtures exist once: one bake, one virtual environment,
one ``npm ci``, one server (``python -m transom_app`` with APP_ENV=test: the
embedded in-memory database) shared by every test that needs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import DEFAULT_SLUG, TEMPLATE, make_venv, run

JS_DIR = TEMPLATE / "tests" / "js"
ARTIFACTS = TEMPLATE / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Small, so the demo-page test can fill a user's sockets and see a refusal.
MAX_SOCKETS_PER_USER = 5
# Small, so the recovery tests can exceed the window with a few API calls.
RECOVERY_MAX_MESSAGES = 60
# Short, so the rooms test sees a member leave soon after their last socket does.
PRESENCE_GRACE_SECONDS = 1
START_TIMEOUT = 60.0
NODE_TIMEOUT = 120.0


@dataclass
class RunningApp:
    url: str
    project: Path
    log_path: Path
    max_sockets_per_user: int = MAX_SOCKETS_PER_USER
    recovery_max_messages: int = RECOVERY_MAX_MESSAGES
    presence_grace_seconds: int = PRESENCE_GRACE_SECONDS
    # A front end on another origin that CORS_ALLOWED_ORIGINS lists: http://127.0.0.1:<this>.
    front_end_port: int = 0

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def installed_default_project(cookies_session) -> tuple[Path, Path]:
    """The default project baked and installed as its README says: (project, python)."""
    result = cookies_session.bake(extra_context={"use_docker": "n"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    return project, make_venv(project)


@pytest.fixture(scope="session")
def running_app(installed_default_project, tmp_path_factory) -> Iterator[RunningApp]:
    """``python -m transom_app`` on a free port with the embedded in-memory database."""
    project, python = installed_default_project
    log_path = tmp_path_factory.mktemp("running-app") / "app.log"
    front_end_port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "HOST": "127.0.0.1",
        # A port of its own, not 0: the links of the account mails (PUBLIC_URL, by default
        # http://HOST:PORT) point at the app, and the browser flows follow them.
        "PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
        "MAX_SOCKETS_PER_USER": str(MAX_SOCKETS_PER_USER),
        "RECOVERY_MAX_MESSAGES": str(RECOVERY_MAX_MESSAGES),
        "PRESENCE_GRACE_SECONDS": str(PRESENCE_GRACE_SECONDS),
        # Every test user signs up from 127.0.0.1 and the recovery tests send more
        # messages a minute than a person would: those limits are off here.
        "SIGNUPS_PER_ADDRESS": "0",
        # Every test user verifies its address from 127.0.0.1 too.
        "MAIL_REQUESTS_PER_ADDRESS": "0",
        "TOKEN_ATTEMPTS_PER_ADDRESS": "0",
        "WRITES_PER_MINUTE_PER_USER": "0",
        "BROADCASTS_PER_MINUTE_PER_USER": "0",
        "CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{front_end_port}",
    }
    env.pop("MONGODB_URI", None)
    with log_path.open("w") as log:
        # The log goes to a file: a pipe nobody drains would block the server.
        process = subprocess.Popen(
            [str(python), "-m", DEFAULT_SLUG],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    app = RunningApp(url="", project=project, log_path=log_path, front_end_port=front_end_port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            found = re.search(r"listening on (http://\S+)", log_path.read_text(errors="replace"))
            if found:
                app.url = found.group(1).rstrip("/")
                break
            time.sleep(0.1)
        assert app.url, f"the app did not start (exit {process.poll()}):\n{app.log_tail()}"
        yield app
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the app binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def js_clients() -> Path:
    """tests/js with its pinned packages installed (``npm ci`` when needed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed (Debian: apt-get install nodejs npm)"
    installed = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        result = run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    return JS_DIR


@pytest.fixture(scope="session")
def run_js(js_clients):
    """``run_js(script, *args, env=None)``: run a tests/js script, return its JSON."""
    return run_node


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Debian Chromium the demo-page test drives (no browser is downloaded)."""
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)"
    )
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the template's root (git-ignored): what a person can look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def run_node(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a tests/js script; return the JSON object it printed (its last stdout line)."""
    result = run(["node", script, *args], cwd=JS_DIR, timeout=NODE_TIMEOUT, env=env)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        observed = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        observed = {}
    problem = observed.get("error") if isinstance(observed, dict) else None
    assert result.returncode == 0 and observed and not problem, (
        f"node {script} exited {result.returncode}\nerror: {problem}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )
    return observed
