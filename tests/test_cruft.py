"""cruft (built on cookiecutter) creates a project and later applies template changes to it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from .conftest import DEFAULT_SLUG, TEMPLATE, run

CRUFT = [sys.executable, "-m", "cruft"]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "node_modules", "test-artifacts", ".*cache"
)


def git(*args: str, cwd: Path) -> None:
    result = run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


def template_repository(tmp_path: Path) -> Path:
    """The template's working tree as a git repository of its own (cruft needs git)."""
    repo = tmp_path / "template"
    shutil.copytree(TEMPLATE, repo, ignore=IGNORED)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "template v1", cwd=repo)
    return repo


def test_cruft_create_then_update_applies_template_changes_and_keeps_secrets(tmp_path):
    repo = template_repository(tmp_path)
    out = tmp_path / "out"
    created = run(
        [*CRUFT, "create", "--no-input", "--output-dir", str(out), str(repo)], cwd=tmp_path
    )
    assert created.returncode == 0, created.stdout + created.stderr
    project = out / DEFAULT_SLUG
    state = json.loads((project / ".cruft.json").read_text())
    assert state["context"]["cookiecutter"]["project_slug"] == DEFAULT_SLUG
    env_before = (project / ".env").read_text()
    git("init", "-q", "-b", "main", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "generated", cwd=project)
    assert run([*CRUFT, "check"], cwd=project).returncode == 0

    readme = repo / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + "\nA line added by a later template release.\n")
    git("commit", "-q", "-am", "template v2", cwd=repo)

    assert run([*CRUFT, "check"], cwd=project).returncode != 0, "the project is now behind"
    updated = run([*CRUFT, "update", "--skip-apply-ask", "--allow-untracked-files"], cwd=project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "A line added by a later template release." in (project / "README.md").read_text()
    assert (project / ".env").read_text() == env_before, "the generated secret is kept"
    assert not list(project.rglob("*.rej"))
    assert run([*CRUFT, "check"], cwd=project).returncode == 0
