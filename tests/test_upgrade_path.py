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


def next_release(source: Path, into: Path, patch: int | None = None) -> str:
    """Build the engine at its version's next patch (or at ``patch``) into ``into``; that
    version."""
    copy = into.parent / f"engine-{into.name}"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", ".*", "tests"))
    init = copy / "src" / "transom_socketio" / "__init__.py"
    text = init.read_text()
    major, minor, current = re.search(r'__version__ = "(\d+)\.(\d+)\.(\d+)"', text).groups()
    version = f"{major}.{minor}.{int(current) + 1 if patch is None else patch}"
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


def pip_extra_indexes() -> list[str]:
    """The extra package indexes pip is configured with here (the environment's, else
    its configuration's): a test adding one must keep them."""
    if "PIP_EXTRA_INDEX_URL" in os.environ:
        return os.environ["PIP_EXTRA_INDEX_URL"].split()
    configured = run(
        [sys.executable, "-m", "pip", "config", "get", "global.extra-index-url"], cwd=LIBRARY
    )
    return configured.stdout.split() if configured.returncode == 0 else []


def make(target: str, project: Path, **env: str) -> None:
    done = subprocess.run(
        ["make", target, f"VENV={project / '.venv'}"],
        cwd=project,
        env={**os.environ, "MAKEFLAGS": "", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_engine_comes_from_wheels_whatever_an_index_offers(cookies_session, tmp_path):
    """Found by a new user's review: make install, make upgrade and the Docker build asked
    the package index for transom-socketio as well as wheels/, so a release of that name
    on PyPI (a name anyone may register) newer than the wheel there would have been
    installed. An index offering 0.3.99, added to the ones pip already uses, is never
    used for it while wheels/ holds the engine."""
    result = cookies_session.bake(extra_context={"message_queue": "none", "use_docker": "n"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    # A package index in a folder (PEP 503: a page per project linking its files).
    listed = tmp_path / "simple" / "transom-socketio"
    squatted = next_release(LIBRARY, listed, patch=99)
    links = "".join(f'<a href="{wheel.name}">{wheel.name}</a>' for wheel in listed.glob("*.whl"))
    (listed / "index.html").write_text(f"<html><body>{links}</body></html>")
    index = {
        "PIP_EXTRA_INDEX_URL": " ".join([*pip_extra_indexes(), (tmp_path / "simple").as_uri()])
    }
    make("install", project, **index)
    python = project / ".venv" / "bin" / "python"
    [wheel] = (project / "wheels").glob("transom_socketio-*.whl")
    generated = wheel.name.split("-")[1]
    assert engine_version(python, project) == generated != squatted
    after = next_release(LIBRARY, project / "wheels")
    make("upgrade", project, **index)
    assert engine_version(python, project) == after
