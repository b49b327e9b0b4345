"""The engine builds into a wheel and an sdist with full metadata, as it would be published."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from .conftest import LIBRARY, run

# The engine's notes, read by `python -m transom_socketio.docs security|faults` (a
# project's `make security-notes`): they ship inside the package.
NOTES = ("transom_socketio/docs/SECURITY.md", "transom_socketio/docs/faults.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The engine's wheel and sdist, built once for this module."""
    out = tmp_path_factory.mktemp("dist")
    done = run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), "."],
        cwd=LIBRARY,
        env={"SOURCE_DATE_EPOCH": "315532800"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [wheel] = out.glob("transom_socketio-*.whl")
    [sdist] = out.glob("transom_socketio-*.tar.gz")
    return wheel, sdist


def test_the_engine_builds_a_wheel_and_an_sdist_with_full_metadata(built):
    wheel, sdist = built

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert "transom_socketio/py.typed" in names, "type information ships with the wheel"
    assert "transom_socketio/testing/plugin.py" in names
    assert not any(name.startswith(("tests/", "example_app/")) for name in names)
    assert metadata["Name"] == "transom-socketio"
    assert metadata["Version"] == wheel.name.split("-")[1]
    assert metadata["Requires-Python"] == ">=3.11"
    assert "MIT" in (metadata["License"] or "") + " ".join(metadata.get_all("Classifier"))
    assert metadata["Summary"] and "Public API" in metadata.get_payload(), "README as description"
    assert set(metadata.get_all("Provides-Extra")) >= {"redis", "motor", "testing"}
    requires = " ".join(metadata.get_all("Requires-Dist"))
    for needed in ("tornado", "python-socketio", "pyjwt", "pymongo", "pydantic"):
        assert needed in requires
    assert "secantusdb" in requires and 'extra == "testing"' in requires
    assert "Changelog" in " ".join(metadata.get_all("Project-URL"))

    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", "tests/conftest.py"):
        assert needed in members, needed


def test_the_engines_notes_ship_in_its_wheel_and_sdist(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as archive:
        for name in NOTES:
            shipped = archive.read(name).decode("utf-8")
            assert shipped == (LIBRARY / "src" / name).read_text(encoding="utf-8"), name
        assert "transom_socketio/docs/__main__.py" in archive.namelist()
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in NOTES:
        assert f"src/{name}" in members, name
