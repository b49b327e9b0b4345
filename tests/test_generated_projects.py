"""Install baked projects as their README says, start them, and run their own test suites.

This is what a new user does after ``cookiecutter``: ``pip install -e '.[dev]'``,
``python -m <slug>``, ``make test``. Each driver x queue combination is checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from .conftest import DEFAULT_SLUG, DRIVERS, QUEUES, make_venv, run

# make test runs on two workers (pytest-xdist, --dist loadgroup); each one takes the
# combinations of one queue, so the two suites that use the shared Redis never run at
# the same time, and each generated suite still has a core to itself.
DOCKER_WITH = {"pymongo": "y", "motor": "n"}
# The default answer (use_docker=y) with one driver, the other without Docker: a file
# only Docker brings (its .env line) must not break the project's own suite either.
SUITE_COMBINATIONS = [
    pytest.param(
        {"mongo_driver": driver, "message_queue": queue, "use_docker": DOCKER_WITH[driver]},
        id=f"{driver}-{queue}",
        marks=pytest.mark.xdist_group(f"queue-{queue}"),
    )
    for driver in DRIVERS
    for queue in QUEUES
]


# One baked, installed project per combination in this worker process, shared by every
# test that needs that combination (the logout race reuses the motor+redis one).
_INSTALLED: dict[tuple[tuple[str, str], ...], tuple] = {}


def install(context: dict[str, str], cookies_session) -> tuple:
    key = tuple(sorted(context.items()))
    if key not in _INSTALLED:
        result = cookies_session.bake(extra_context={"use_docker": "n", **context})
        assert result.exit_code == 0, result.exception
        project = result.project_path
        _INSTALLED[key] = (context, project, make_venv(project))
    return _INSTALLED[key]


@pytest.fixture(scope="module", params=SUITE_COMBINATIONS)
def installed(request, cookies_session):
    return install(request.param, cookies_session)


FIGURE_LINE = re.compile(r"^\[[a-z_]+\] ")


def test_generated_test_suite_passes(installed, capsys):
    context, project, python = installed
    result = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    # The fault, load and fuzz tests print their figures (requests tried, 5xx seen,
    # messages sent and received): show them in this run's output too.
    figures = [line for line in result.stdout.splitlines() if FIGURE_LINE.match(line)]
    with capsys.disabled():
        print(f"\ngenerated suite {context}: {len(figures)} lines of figures")
        for line in figures:
            print(f"  {line}")
    assert result.returncode == 0, tail
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) > 0
    assert " failed" not in result.stdout and " error" not in result.stdout


def test_the_type_checker_is_clean(installed):
    # make lint runs mypy after ruff ([tool.mypy] in the project's pyproject.toml): each
    # combination's package type-checks with the dependencies its README installs.
    _context, project, python = installed
    result = run([str(python), "-m", "mypy"], cwd=project, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def test_python_m_serves_on_the_embedded_database_and_stops_on_ctrl_c(installed, tmp_path):
    _context, project, python = installed
    env = {**os.environ, "PORT": "0", "APP_ENV": "development", "DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [str(python), "-m", DEFAULT_SLUG],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            found = re.search(r"listening on (http://\S+)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        assert any("embedded database" in line for line in lines)
        status, body = _get_json(url + "/health")
        assert (status, body) == (200, {"status": "ok", "mongo": "ok"})
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        lines.extend(process.stdout.readlines())
        assert any("stopped" in line for line in lines), "".join(lines)
        assert (tmp_path / "data" / "db").is_dir(), "development data lives under DATA_DIR"
    finally:
        if process.poll() is None:
            process.kill()
