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
    for cmd in (
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
    ):
        result = run(cmd, cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
    return python


@pytest.fixture(scope="session")
def template_dir() -> Path:
    return TEMPLATE


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
