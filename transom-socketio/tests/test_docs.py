"""The engine's notes (``transom_socketio/docs``): the command prints the installed ones,
and every test they cite is in this suite."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from transom_socketio.docs import NOTES, read_notes

TESTS = Path(__file__).resolve().parent

# A bracket that cites tests: "[test_a, test_b]", "[test_a::test_full_name]" or
# "[test_a: part_of_a_name, another_part; test_b]".
BRACKET = re.compile(r"\[([^\[\]]*\btest_\w[^\[\]]*)\]")
# A test module named in prose: "`tests/test_a.py::test_full_name`", "`test_a.py`"; or
# one of the template's own tests ("the template's `tests/test_upgrade_path.py`"), which
# are not in this suite.
MODULE_PATH = re.compile(r"(template's `)?(?:tests/)?(test_\w+)\.py(?:::(test_\w+))?")


def run_docs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this suite's own arguments)
        [sys.executable, "-m", "transom_socketio.docs", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def packaged(name: str) -> str:
    return files("transom_socketio.docs").joinpath(NOTES[name]).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "heading"),
    [("security", "## Threat model"), ("faults", "## The database is down")],
)
def test_the_command_prints_the_installed_notes(name, heading):
    done = run_docs(name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == packaged(name) == read_notes(name)
    assert f"\n{heading}\n" in done.stdout


@pytest.mark.parametrize("args", [["secrets"], [], ["security", "faults"], ["SECURITY"]])
def test_anything_else_exits_2_with_one_usage_line_naming_the_choices(args):
    done = run_docs(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line == "usage: python -m transom_socketio.docs {security,faults}"


def test_the_notes_are_plain_markdown_that_names_no_tracker_issue():
    for name in NOTES:
        text = read_notes(name)
        for leftover in ("{{", "{%", "{#", "cookiecutter"):
            assert leftover not in text, (name, leftover)
        assert not re.search(r"\bissue \d", text), name


def cited(text: str) -> list[tuple[str, str | None, str | None]]:
    """Each (module, full test name, part of a test name) the notes cite."""
    found: list[tuple[str, str | None, str | None]] = []
    for bracket in BRACKET.findall(text):
        for group in " ".join(bracket.split()).split(";"):
            module = None
            for item in (part.strip() for part in group.split(",")):
                if match := re.fullmatch(r"(test_\w+)::(test_\w+)", item):
                    found.append((match[1], match[2], None))
                    module = None
                elif match := re.fullmatch(r"(test_\w+):\s*(\w+)", item):
                    module = match[1]
                    found.append((module, None, match[2]))
                elif re.fullmatch(r"test_\w+", item):
                    found.append((item, None, None))
                    module = None
                else:
                    assert module and re.fullmatch(r"\w+", item), f"unreadable: [{bracket}]"
                    found.append((module, None, item))
    for template, module, test in MODULE_PATH.findall(text):
        if not template:
            found.append((module, test or None, None))
    return found


@pytest.mark.parametrize("name", list(NOTES))
def test_every_test_the_notes_cite_is_in_this_suite(name):
    citations = cited(read_notes(name))
    assert len(citations) > 20 if name == "security" else len(citations) > 10
    missing = []
    for module, test, part in citations:
        path = TESTS / f"{module}.py"
        if not path.is_file():
            missing.append(module)
            continue
        defined = re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(), re.M)
        if test is not None and test not in defined:
            missing.append(f"{module}::{test}")
        if part is not None and not any(part in each for each in defined):
            missing.append(f"{module}: {part}")
    assert not missing, missing
