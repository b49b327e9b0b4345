"""Shared fixtures of the template's tests: baking projects, and virtual environments
where a baked project is installed the way its README says (``pip install -e '.[dev]'``)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
DEFAULT_SLUG = "transom_app"
# The engine library's folder, and the environment make test installs it in (with its
# dev extra): template tests that need the engine's code without baking run there.
LIBRARY = TEMPLATE / "transom-socketio"
LIBRARY_PYTHON = TEMPLATE / "build" / "lib-venv" / "bin" / "python"

DRIVERS = ("pymongo", "motor")
QUEUES = ("none", "redis")
DOCKER = ("y", "n")
ALL_COMBINATIONS = [
    {"mongo_driver": d, "message_queue": q, "use_docker": k}
    for d, q, k in itertools.product(DRIVERS, QUEUES, DOCKER)
]


def combination_id(context: dict[str, str]) -> str:
    return "-".join(f"{key}={value}" for key, value in context.items())


def run(cmd: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None):
    """Run a command, returning the CompletedProcess; output is kept for assertions."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_venv(project: Path) -> Path:
    """A fresh virtual environment with the project installed as its README says."""
    env_dir = project / ".venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    for cmd in (
        [*pip, "--upgrade", "pip"],
        # As the project's Makefile does: the engine from wheels/ alone, then the project.
        [*pip, "--no-index", "--no-deps", "--find-links", "wheels", "transom-socketio"],
        [*pip, "-e", ".[dev]"],
    ):
        result = run(cmd, cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
    (env_dir / ".installed").touch()  # the Makefile's stamp: make sees it installed
    return python


@pytest.fixture(scope="session")
def template_dir() -> Path:
    return TEMPLATE


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """make test's workers keep each ``xdist_group`` on one worker: the suites that share
    the one Redis never run at the same time, and a browser flow's module fixture runs
    once. pytest-xdist applies a group by suffixing the test's id with ``@<group>``;
    xdist 3.8 under pytest 9 did not (it sets an attribute pytest 9 no longer reads),
    and the groups were silently spread over both workers. Stop rather than run so."""
    if not getattr(config.option, "loadgroup", False):
        return
    ungrouped = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not apply xdist_group to {len(ungrouped)} tests "
            f"(e.g. {ungrouped[0]}): check the pytest and pytest-xdist versions"
        )
