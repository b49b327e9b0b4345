"""The generated README's "add an entity" and "add a route" walk-throughs, followed
literally (issue 15).

The code blocks are taken from the baked README: a block whose first line is
``# <path>`` is that file, ``# <path>: import`` is a line added among the package's
own imports and ``# <path>: route`` a route added at the end of ``make_app``'s
routes, after the entities' (``*entity_routes(...)``), as the README says. Then the
project's whole suite (with the README's ``tests/test_note.py`` and a test written
here: validation, the OpenAPI document and the socket push), ruff and mypy pass, with
no other file changed (issue 21: the walk-throughs import from transom_socketio, and
the route's handler is a module of the package).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from .conftest import DEFAULT_SLUG, make_venv, run

pytestmark = pytest.mark.xdist_group("queue-none")  # alongside the default suite

BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
SECTIONS = ("## Add an entity, step by step", "## Add a route with its own handler")

# Written by this test, not by the README: what a user would check by hand.
CHECKS = """
import pytest
from openapi_spec_validator import validate


@pytest.mark.gen_test
async def test_the_walkthrough_is_validated_and_documented(api):
    ada = await api.new_user()
    for path, body, field in [
        ("/api/v1/db/note", {"title": "x" * 201}, "title"),
        ("/api/v1/db/note", {"title": "hi", "colour": "red"}, "colour"),
        ("/api/v1/nudge", {"to": "bob"}, "to"),
        ("/api/v1/nudge", {}, "to"),
    ]:
        refused = await api.request("POST", path, body, token=ada.token)
        assert refused.status == 400, (path, body)
        assert refused.body["error"]["code"] == "validation_error"
        assert refused.body["error"]["field"] == field
    untitled = await api.request("POST", "/api/v1/db/note", {"title": "Untitled"}, token=ada.token)
    assert untitled.body["error"]["message"] == "give the note a title"

    document = (await api.request("GET", "/api/v1/openapi.json")).body
    validate(document)
    assert {"/api/v1/db/note", "/api/v1/db/note/{id}", "/api/v1/nudge"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert schemas["NewNote"]["required"] == ["title"]
    assert "shared_with" not in schemas["NoteChanges"]["properties"]
    nudge = document["paths"]["/api/v1/nudge"]["post"]
    assert nudge["security"] == [{"bearerAuth": []}]
    assert {"200", "400", "401", "413", "415", "503"} == set(nudge["responses"])
"""


def walkthrough_blocks(readme: str) -> list[tuple[str, str, str]]:
    """(path, how, code) of each code block of the two walk-throughs, in order."""
    blocks = []
    for title in SECTIONS:
        section = readme[readme.index(title) :]
        section = section[: section.index("\n## ", len(title))]
        for match in BLOCK.finditer(section):
            code = textwrap.dedent(match.group(2))
            first, _, rest = code.partition("\n")
            target = first.removeprefix("# ").strip()
            path, _, how = target.partition(": ")
            blocks.append((path, how, rest if how else code))
    return blocks


def apply(project: Path, path: str, how: str, code: str) -> None:
    target = project / path
    if not how:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
        return
    lines = target.read_text().splitlines(keepends=True)
    if how == "import":  # where isort puts it among the package's own imports
        own = [i for i, line in enumerate(lines) if line.startswith("from .")]
        at = next((i for i in own if lines[i] > code), own[-1] + 1)
        lines.insert(at, code)
    elif how == "route":
        marker = "*entity_routes(ENTITIES, ACTIONS_PACKAGE),"
        at = next((i for i, line in enumerate(lines) if marker in line), None)
        assert at is not None, f"no line with {marker!r} in {path}"
        lines.insert(at + 1, code)
    else:
        raise AssertionError(f"the README block for {path} says {how!r}: neither import nor route")
    target.write_text("".join(lines))


def changed_files(project: Path) -> set[str]:
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, capture_output=True)
    listed = subprocess.run(
        ["git", "diff", "--cached", "--name-only"], cwd=project, check=True, capture_output=True
    )
    return set(listed.stdout.decode().split())


def test_the_readme_walkthroughs_work_as_written(cookies_session):
    result = cookies_session.bake(
        extra_context={"mongo_driver": "pymongo", "message_queue": "none", "use_docker": "n"}
    )
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    python = make_venv(project)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "baked", "--no-verify"]):
        env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", *env, *cmd], cwd=project, check=True, capture_output=True)

    blocks = walkthrough_blocks((project / "README.md").read_text())
    for path, how, code in blocks:
        apply(project, path, how, code)
    slug = DEFAULT_SLUG
    assert changed_files(project) == {
        f"{slug}/models/note.py",
        f"{slug}/models/actions/note.py",
        f"{slug}/models/__init__.py",
        f"{slug}/nudge.py",
        f"{slug}/app.py",
        "tests/test_note.py",
    }
    (project / "tests" / "test_walkthrough_checks.py").write_text(CHECKS)

    lint = run([str(python), "-m", "ruff", "check", "."], cwd=project)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    types = run([str(python), "-m", "mypy"], cwd=project)
    assert types.returncode == 0, types.stdout + types.stderr
    # The whole suite: the walk-throughs' tests and every test the project came with.
    pytest_cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    outcome = run(pytest_cmd, cwd=project)
    assert outcome.returncode == 0, "\n".join(outcome.stdout.splitlines()[-40:])
    assert " failed" not in outcome.stdout and " error" not in outcome.stdout
