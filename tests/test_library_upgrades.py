"""The engine on stock python-socketio, on the tested and the newest library releases.

The fast path (``transom_socketio/realtime/accel/``) runs only on the exact
python-socketio, python-engineio and Tornado versions it was tested with
(``accel/versions.py``); on any other release within the majors the engine's
pyproject.toml allows, apps run stock python-socketio. So the engine's realtime and
security suites (``pytest -m realtime`` in ``transom-socketio/``) must pass on stock
python-socketio:

- with the tested versions, and FAST_FANOUT=false (the switch off);
- with the newest releases within the majors, as ``pip install --upgrade`` would
  install them for a security fix.

One virtual environment (not make test's: this one is upgraded) serves both. When the
newest releases are the tested ones (as they were when this test was written), the two runs would be
the same run, and it runs once.
"""

from __future__ import annotations

import ast
import re
import venv

import pytest

from .conftest import LIBRARY, run

UPGRADE = ["python-socketio<6", "python-engineio<5", "tornado<7"]
VERSIONS_FILE = LIBRARY / "src" / "transom_socketio" / "realtime" / "accel" / "versions.py"


def read_tested_versions() -> dict[str, str]:
    """The TESTED constant of the engine's accel/versions.py."""
    tree = ast.parse(VERSIONS_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "TESTED":
            return ast.literal_eval(node.value)
    raise AssertionError(f"no TESTED in {VERSIONS_FILE}")


def installed_versions(python, project, names) -> dict[str, str]:
    code = "from importlib import metadata; import sys\n"
    code += "for n in sys.argv[1:]: print(n, metadata.version(n))"
    result = run([str(python), "-c", code, *names], cwd=project)
    assert result.returncode == 0, result.stderr
    return dict(line.split() for line in result.stdout.splitlines())


def realtime_suites_pass_stock(python, project, label: str) -> None:
    pytest_cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = run(
        # Two workers: the suites mostly wait (timeouts, reconnections), not compute.
        [*pytest_cmd, "-m", "realtime", "-n", "2", "--dist", "loadgroup", "tests"],
        cwd=project,
        env={"FAST_FANOUT": "false"},
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"{label}:\n{tail}"
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) > 0, tail


@pytest.mark.xdist_group("queue-redis")  # the engine's suite uses the shared Redis
def test_realtime_and_security_suites_pass_stock_on_tested_and_newest_releases(tmp_path, capsys):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    tested = read_tested_versions()
    pins = [f"{name}=={version}" for name, version in tested.items()]
    install = [str(python), "-m", "pip", "install", "--quiet", f"{LIBRARY}[dev]", *pins]
    installed = run(install, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    realtime_suites_pass_stock(python, LIBRARY, f"tested releases {tested}")

    upgraded = run(
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", *UPGRADE], cwd=tmp_path
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    newest = installed_versions(python, tmp_path, list(tested))
    with capsys.disabled():
        print(f"\nlibrary upgrades: tested {tested}, newest within the majors {newest}")
    if newest != tested:
        realtime_suites_pass_stock(python, LIBRARY, f"newest releases {newest}")
