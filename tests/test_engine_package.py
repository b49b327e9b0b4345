"""The engine builds into a wheel and an sdist with full metadata, as it would be published."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser

from .conftest import LIBRARY, run


def test_the_engine_builds_a_wheel_and_an_sdist_with_full_metadata(tmp_path):
    built = run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(tmp_path), "."],
        cwd=LIBRARY,
        env={"SOURCE_DATE_EPOCH": "315532800"},
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = tmp_path.glob("transom_socketio-*.whl")
    [sdist] = tmp_path.glob("transom_socketio-*.tar.gz")

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
