"""The generated app on stock python-socketio, on the tested and the newest library releases.

The fast path (``realtime/accel/``) runs only on the exact python-socketio,
python-engineio and Tornado versions it was tested with (``accel/versions.py``);
on any other release within the majors pyproject.toml allows, the app runs stock
python-socketio. So the realtime and security suites (``pytest -m realtime`` in the
generated project) must pass on stock python-socketio:

- with the tested versions, and FAST_FANOUT=false (the switch off);
- with the newest releases within the majors, as ``pip install --upgrade`` would
  install them for a security fix.

One baked project and one virtual environment serve both. When the newest releases
are the tested ones (as they were when this test was written), the two runs would be
the same run, and it runs once.
"""

from __future__ import annotations

import ast
import re

import pytest

from .conftest import make_venv, run

UPGRADE = ["python-socketio<6", "python-engineio<5", "tornado<7"]
VERSIONS_FILE = "realtime/accel/versions.py"


def read_tested_versions(package) -> dict[str, str]:
    """The TESTED constant of the baked project's accel/versions.py."""
    tree = ast.parse((package / VERSIONS_FILE).read_text())
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
    result = run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "realtime"],
        cwd=project,
        env={"FAST_FANOUT": "false"},
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"{label}:\n{tail}"
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) > 0, tail


@pytest.mark.xdist_group("library-upgrades")
def test_realtime_and_security_suites_pass_stock_on_tested_and_newest_releases(
    cookies_session, capsys
):
    result = cookies_session.bake(extra_context={"use_docker": "n"})
    assert result.exit_code == 0, result.exception
    project = result.project_path
    python = make_venv(project)
    tested = read_tested_versions(project / project.name)
    pins = [f"{name}=={version}" for name, version in tested.items()]
    pinned = run([str(python), "-m", "pip", "install", "--quiet", *pins], cwd=project)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    realtime_suites_pass_stock(python, project, f"tested releases {tested}")

    upgraded = run(
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", *UPGRADE], cwd=project
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    newest = installed_versions(python, project, list(tested))
    with capsys.disabled():
        print(f"\nlibrary upgrades: tested {tested}, newest within the majors {newest}")
    if newest != tested:
        realtime_suites_pass_stock(python, project, f"newest releases {newest}")
