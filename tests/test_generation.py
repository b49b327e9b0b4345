"""Bake every combination of options and check what a user gets: a thin app on the engine."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

import pytest

from .conftest import ALL_COMBINATIONS, DEFAULT_SLUG, LIBRARY, combination_id, run

UNRENDERED = re.compile(r"{{\s*cookiecutter|{%-?\s*(if|for|endif)\b|cookiecutter\.")
OPTION_FILES = {
    "redis": [
        "{pkg}/worker.py",
        "tests/test_scale_out.py",
    ],
    "docker": ["Dockerfile", "compose.yaml", ".dockerignore"],
}
RUFF = [sys.executable, "-m", "ruff"]


def text_files(project):
    for path in sorted(project.rglob("*")):
        if path.is_file() and "vendor" not in path.parts:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


@pytest.fixture(scope="module", params=ALL_COMBINATIONS, ids=combination_id)
def baked(request, cookies_session):
    result = cookies_session.bake(extra_context=request.param)
    assert result.exit_code == 0, result.exception
    return request.param, result.project_path


def test_layout_matches_the_spec(baked):
    _context, project = baked
    pkg = project / DEFAULT_SLUG
    for relative in (
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".env.example",
        ".env",
        ".gitignore",
        "tests/conftest.py",
    ):
        assert (project / relative).is_file(), relative
    for module in (
        "__main__.py",
        "settings.py",
        "app.py",
        "auth.py",
        "db.py",
        "pages.py",
        "models/__init__.py",
        "models/actions/message.py",
        "static/vendor/socket.io.min.js",
        "templates/index.html",
    ):
        assert (pkg / module).is_file(), module


def test_no_unrendered_template_tags(baked):
    _context, project = baked
    for path, text in text_files(project):
        match = UNRENDERED.search(text)
        assert match is None, f"{path.relative_to(project)}: {match.group(0)!r}"


def test_unchosen_options_are_pruned(baked):
    context, project = baked
    wanted = {
        "redis": context["message_queue"] == "redis",
        "docker": context["use_docker"] == "y",
    }
    for option, files in OPTION_FILES.items():
        for relative in files:
            path = project / relative.format(pkg=DEFAULT_SLUG)
            assert path.exists() == wanted[option], f"{relative} with {context}"
    sources = "\n".join(text for path, text in text_files(project) if path.suffix == ".py")
    other_driver = "motor" if context["mongo_driver"] == "pymongo" else "AsyncMongoClient"
    assert other_driver not in sources
    if context["message_queue"] == "none":
        assert "redis" not in sources.lower()
    # The Mailpit inbox's login belongs to compose.yaml: no trace of it without Docker,
    # and never among the app's settings (.env.example lists exactly those).
    assert ("MAILPIT_UI_AUTH=" in (project / ".env").read_text()) == wanted["docker"]
    assert "MAILPIT_UI_AUTH" not in (project / ".env.example").read_text()


# The engine's wheel, and no copy of its source: the generated package stays small.
MAX_APP_LINES = 1500


def test_the_app_is_thin_and_installs_the_engine_from_its_wheel(baked):
    _context, project = baked
    assert len(list((project / "wheels").glob("transom_socketio-*-py3-none-any.whl"))) == 1
    assert not (project / "transom-socketio").exists()
    assert not list(project.rglob("transom_socketio/__init__.py"))
    package = project / DEFAULT_SLUG
    lines = sum(len(p.read_text().splitlines()) for p in package.rglob("*.py"))
    assert lines <= MAX_APP_LINES, f"{lines} lines of Python in the generated package"


def engine_version() -> str:
    init = LIBRARY / "src" / "transom_socketio" / "__init__.py"
    return re.search(r'__version__ = "([^"]+)"', init.read_text()).group(1)


def test_dependencies_follow_the_choices(baked):
    context, project = baked
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    deps = " ".join(meta["dependencies"])
    assert ("motor" in deps) == (context["mongo_driver"] == "motor")
    assert ("redis" in deps) == (context["message_queue"] == "redis")
    # From a release of the engine's own minor (at most the engine's version: the one
    # the template's code needs), up to the next minor (semver before 1.0).
    version = tuple(int(part) for part in engine_version().split("."))
    major, minor = version[:2]
    pinned = rf"transom-socketio(?:\[redis\])?>=([0-9.]+),<{major}\.{minor + 1}"
    found = re.search(pinned, deps)
    assert found, deps
    floor = tuple(int(part) for part in found.group(1).split("."))
    assert floor[:2] == (major, minor) and floor <= version, deps
    dev = " ".join(meta["optional-dependencies"]["dev"])
    for required in ("transom-socketio[testing]", "ruff", "mypy"):
        assert required in dev
    assert "secantusdb" not in deps, "the GPL embedded database is a dev dependency only"


def test_ruff_check_and_format_are_clean(baked):
    _context, project = baked
    check = run([*RUFF, "check", "."], cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run([*RUFF, "format", "--check", "."], cwd=project)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_every_python_file_compiles(baked):
    _context, project = baked
    result = run([sys.executable, "-m", "compileall", "-q", "."], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def public_api() -> dict[str, set[str]]:
    """The engine README's "Public API" table: module -> the names it lists."""
    readme = (LIBRARY / "README.md").read_text()
    table = readme[readme.index("## Public API") :].split("\n## ", 1)[0]
    api: dict[str, set[str]] = {}
    for module, names in re.findall(r"^\| `(transom_socketio[\w.]*)` \| (.*) \|$", table, re.M):
        api[module] = set(re.findall(r"`([A-Za-z_]\w*)", names))
    return api


ENGINE = "transom_socketio"


def engine_imports(project) -> set[tuple[str, str]]:
    """(module, name) of every import from transom_socketio in the project's code."""
    found = set()
    for path in project.rglob("*.py"):
        if "wheels" in path.parts or ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(ENGINE):
                found.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update((a.name, "") for a in node.names if a.name.startswith(ENGINE))
    return found


def test_the_project_imports_only_the_engines_public_api(baked):
    _context, project = baked
    api = public_api()
    imports = engine_imports(project)
    assert imports, "the project is built on the engine"
    for module, name in sorted(imports):
        assert not any(part.startswith("_") for part in [*module.split("."), name]), (module, name)
        submodule = f"{module}.{name}"
        assert module in api or submodule in api, f"{module} is not in the public API"
        if module in api and submodule not in api:
            assert name in api[module], f"{module}.{name} is not in the public API table"
