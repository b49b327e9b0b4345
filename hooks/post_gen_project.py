"""Finish the generated project: build the engine's wheel, write ``.env`` with fresh
secrets, prune unchosen options.

Runs inside the generated project directory. Answers are read as data (``json.loads``
of ``tojson``), like in ``pre_gen_project.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
PROJECT = Path.cwd()
PACKAGE = PROJECT / ANSWERS["project_slug"]

# Files that exist only for one option. Paths are relative to the project root;
# "{pkg}" is the package directory.
ONLY_WITH_REDIS = [
    "{pkg}/worker.py",
    "tests/test_scale_out.py",
]
ONLY_WITH_DOCKER = ["Dockerfile", "compose.yaml", ".dockerignore"]


def remove(relative_paths: list[str]) -> None:
    for relative in relative_paths:
        path = PROJECT / relative.format(pkg=ANSWERS["project_slug"])
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# The engine library, in the template's checkout (cookiecutter puts the checkout's path
# in the context as _repo_dir, for a local path and for a cloned gh: template alike).
ENGINE_FOLDER = "transom-socketio"
# Wheels built from the same source are byte-identical (flit honours SOURCE_DATE_EPOCH).
WHEEL_EPOCH = "315532800"


def engine_source() -> Path | None:
    """The engine's folder in the template checkout: cookiecutter names the checkout
    ``_repo_dir``; cruft, which renders without it, names a local template ``_template``."""
    for key in ("_repo_dir", "_template"):
        repo = ANSWERS.get(key)
        if repo:
            source = (Path(os.environ.get("PWD", ".")) / repo).resolve() / ENGINE_FOLDER
            if (source / "pyproject.toml").is_file():
                return source
    return None


def build_engine_wheel() -> str | None:
    """Build transom-socketio's wheel into ``wheels/``, where the project's Makefile and
    Dockerfile install it from until it is on a package index; None, or one error line."""
    source = engine_source()
    if source is None:
        # cruft update renders from a remote template without naming its checkout: the
        # project keeps the wheels it has (``make upgrade`` moves the engine).
        print(
            "warning: transom-socketio's wheel not built (template checkout not found); "
            "install it from a package index or with pip wheel <template>/transom-socketio",
            file=sys.stderr,
        )
        return None
    wheels = PROJECT / "wheels"
    wheels.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    command += ["--wheel-dir", str(wheels), str(source)]
    env = {**os.environ, "SOURCE_DATE_EPOCH": WHEEL_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or ["pip failed"])[-1]
        return f"cannot build transom-socketio's wheel: {last}"
    return None


# compose.yaml's, not the app's (.env.example lists exactly the app's settings).
MAILPIT_LOGIN = """
# docker compose only: the login (user:password) of the Mailpit inbox on
# http://127.0.0.1:8025, which holds every mail's links.
MAILPIT_UI_AUTH=mail:{password}"""


def write_env_file() -> None:
    """Copy .env.example to .env, filling in a fresh JWT secret (48 random bytes) and, with
    Docker, a login for the Mailpit inbox.

    A .env already there (the project generated again over itself) is the user's: its
    secret and settings are kept. The file is created readable by its owner only,
    before the secret is written into it."""
    env_path = PROJECT / ".env"
    if env_path.exists():
        return
    example = (PROJECT / ".env.example").read_text(encoding="utf-8")
    secret = secrets.token_urlsafe(48)
    lines = [
        f"JWT_SECRET={secret}" if line.startswith("JWT_SECRET=") else line
        for line in example.splitlines()
    ]
    if ANSWERS["use_docker"] == "y":
        lines += MAILPIT_LOGIN.format(password=secrets.token_urlsafe(24)).splitlines()
    descriptor = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as env_file:
        env_file.write("\n".join(lines) + "\n")


def ensure_env_is_ignored() -> None:
    gitignore = PROJECT / ".gitignore"
    entries = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if ".env" not in entries:
        gitignore.write_text("\n".join([*entries, ".env"]) + "\n", encoding="utf-8")


# What to do once the project is there (cookiecutter itself says nothing).
NEXT_STEPS = """
Generated {slug}/. Next:
  cd {slug}
  make run    # serve http://127.0.0.1:8000 (PORT=8001 make run: another port)
  make test   # lint, then the test suite
README.md has the rest: the API with curl, adding an entity, deploying."""


def main() -> int:
    error = build_engine_wheel()
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if ANSWERS["message_queue"] != "redis":
        remove(ONLY_WITH_REDIS)
    if ANSWERS["use_docker"] != "y":
        remove(ONLY_WITH_DOCKER)
    write_env_file()
    ensure_env_is_ignored()
    print(NEXT_STEPS.format(slug=ANSWERS["project_slug"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
