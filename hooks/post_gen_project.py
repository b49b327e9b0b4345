"""Finish the generated project: write ``.env`` with fresh secrets, prune unchosen options.

Runs inside the generated project directory. Answers are read as data (``json.loads``
of ``tojson``), like in ``pre_gen_project.py``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
PROJECT = Path.cwd()
PACKAGE = PROJECT / ANSWERS["project_slug"]

# Files that exist only for one option. Paths are relative to the project root;
# "{pkg}" is the package directory.
ONLY_WITH_REDIS = [
    "{pkg}/realtime/redis_queue.py",
    "{pkg}/realtime/redis_history.py",
    "{pkg}/worker.py",
    "{pkg}/workers.py",
    "tests/test_scale_out.py",
    "tests/test_presence_scale_out.py",
    "tests/test_recovery_scale_out.py",
]
ONLY_WITH_DOCKER = ["Dockerfile", "compose.yaml", ".dockerignore"]


def remove(relative_paths: list[str]) -> None:
    for relative in relative_paths:
        path = PROJECT / relative.format(pkg=ANSWERS["project_slug"])
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_env_file() -> None:
    """Copy .env.example to .env, filling in a fresh JWT secret (48 random bytes)."""
    example = (PROJECT / ".env.example").read_text(encoding="utf-8")
    secret = secrets.token_urlsafe(48)
    lines = [
        f"JWT_SECRET={secret}" if line.startswith("JWT_SECRET=") else line
        for line in example.splitlines()
    ]
    env_path = PROJECT / ".env"
    env_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env_path.chmod(0o600)


def ensure_env_is_ignored() -> None:
    gitignore = PROJECT / ".gitignore"
    entries = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if ".env" not in entries:
        gitignore.write_text("\n".join([*entries, ".env"]) + "\n", encoding="utf-8")


def main() -> int:
    if ANSWERS["message_queue"] != "redis":
        remove(ONLY_WITH_REDIS)
    if ANSWERS["use_docker"] != "y":
        remove(ONLY_WITH_DOCKER)
    write_env_file()
    ensure_env_is_ignored()
    return 0


if __name__ == "__main__":
    sys.exit(main())
