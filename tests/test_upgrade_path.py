"""A project generated and extended by its user moves to the next engine release with
the one command its README documents (``make upgrade``), and its own suite still passes.

Until there is a previous release to start from, the test builds the next one itself:
the engine's source at a bumped patch version, as a release would publish it. The
project is extended first the way its README shows (an entity with an action, a route),
so the upgrade meets a project that is no longer as generated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LIBRARY, make_venv, run
from .test_walkthrough import apply, walkthrough_blocks

pytestmark = pytest.mark.xdist_group("queue-none")


def next_release(source: Path, into: Path) -> str:
    """Build the engine at its version's next patch into ``into``; that version."""
    copy = into.parent / "engine-next"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", ".*", "tests"))
    init = copy / "src" / "transom_socketio" / "__init__.py"
    text = init.read_text()
    major, minor, patch = re.search(r'__version__ = "(\d+)\.(\d+)\.(\d+)"', text).groups()
    version = f"{major}.{minor}.{int(patch) + 1}"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', text))
    (copy / "README.md").write_text("# transom-socketio\n")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into)]
    built = run([*build, str(copy)], cwd=copy, env={"SOURCE_DATE_EPOCH": "315532800"})
    assert built.returncode == 0, built.stdout + built.stderr
    return version


def engine_version(python: Path, project: Path) -> str:
    code = "from importlib.metadata import version; print(version('transom-socketio'))"
    result = run([str(python), "-c", code], cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_an_extended_project_upgrades_to_the_next_engine_release(cookies_session):
    result = cookies_session.bake(extra_context={"message_queue": "none", "use_docker": "n"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    python = make_venv(project)
    before = engine_version(python, project)
    for path, how, code in walkthrough_blocks((project / "README.md").read_text()):
        apply(project, path, how, code)

    after = next_release(LIBRARY, project / "wheels")
    assert after != before
    upgrade = subprocess.run(
        ["make", "upgrade", f"VENV={project / '.venv'}"],
        cwd=project,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert engine_version(python, project) == after

    suite = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    tail = "\n".join((suite.stdout + suite.stderr).splitlines()[-30:])
    assert suite.returncode == 0, tail
    assert " failed" not in suite.stdout and " error" not in suite.stdout, tail
