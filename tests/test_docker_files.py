"""Dockerfile and compose.yaml: there is no Docker engine here, so check what can be checked.

The files parse; every variable compose passes to the app is one the app reads; the
image runs the README's command as a non-root user without the dev extra; the health
check probes /health; .env.example lists every variable of SPEC §5.
"""

from __future__ import annotations

import re
import sys
import zipfile

import pytest
import yaml

from .conftest import DEFAULT_SLUG, LIBRARY_PYTHON, run

SPEC_VARIABLES = {
    "APP_ENV",
    "HOST",
    "PORT",
    "MONGODB_URI",
    "MONGODB_DB",
    "JWT_SECRET",
    "JWT_TTL_SECONDS",
    "SOCKET_TOKEN_TTL_SECONDS",
    "CORS_ALLOWED_ORIGINS",
    "LOG_LEVEL",
}


@pytest.fixture(scope="module", params=["none", "redis"])
def project(request, cookies_session):
    result = cookies_session.bake(extra_context={"use_docker": "y", "message_queue": request.param})
    assert result.exit_code == 0, result.exception
    return request.param, result.project_path


def variables_the_app_reads(project) -> set[str]:
    """Each field of the app's Settings (the engine's and its own) is one variable."""
    code = f"from {DEFAULT_SLUG}.settings import Settings\nprint(*Settings.model_fields)"
    result = run([str(LIBRARY_PYTHON), "-c", code], cwd=project, env={"PYTHONPATH": str(project)})
    assert result.returncode == 0, result.stderr
    return {name.upper() for name in result.stdout.split()}


def test_compose_parses_and_passes_only_variables_the_app_reads(project):
    queue, path = project
    compose = yaml.safe_load((path / "compose.yaml").read_text())
    services = compose["services"]
    expected = {"app", "mongo", "mailpit"} | ({"redis"} if queue == "redis" else set())
    assert set(services) == expected
    assert services["mongo"]["image"] == "mongo:8"
    assert any(volume.startswith("mongo-data:") for volume in services["mongo"]["volumes"])
    if queue == "redis":
        assert services["redis"]["image"] == "redis:7"
    environment = services["app"]["environment"]
    unknown = set(environment) - variables_the_app_reads(path)
    assert not unknown, f"compose passes variables the app ignores: {unknown}"
    assert environment["APP_ENV"] == "production"
    assert environment["MONGODB_URI"].startswith("mongodb://mongo:")
    assert environment["JWT_SECRET"].startswith("${JWT_SECRET"), "the secret comes from .env"
    assert ("REDIS_URL" in environment) == (queue == "redis")
    # Production requires SMTP_URL: mail goes to the Mailpit catcher unless .env names
    # a provider, so `docker compose up` starts as it is.
    assert environment["SMTP_URL"] == "${SMTP_URL:-smtp://mailpit:1025}"
    assert "mailpit" in services["app"]["depends_on"]


def test_the_mail_catcher_asks_for_the_login_the_template_wrote(project):
    """Found by a review: Mailpit's inbox (every reset link) answered any page the
    browser opened, through DNS rebinding (it does not check Host): it asks for a login,
    which comes from .env, and runs a release whose event socket checks the origin."""
    _queue, path = project
    mailpit = yaml.safe_load((path / "compose.yaml").read_text())["services"]["mailpit"]
    assert mailpit["ports"] == ["127.0.0.1:8025:8025"]
    version = re.fullmatch(r"axllent/mailpit:v(\d+)\.(\d+)", mailpit["image"])
    assert tuple(map(int, version.groups())) >= (1, 29)
    assert mailpit["environment"]["MP_UI_AUTH"].startswith("${MAILPIT_UI_AUTH:?")
    [login] = re.findall(r"^MAILPIT_UI_AUTH=(.+)$", (path / ".env").read_text(), re.MULTILINE)
    user, _, password = login.partition(":")
    assert user and len(password) >= 24 and " " not in login


def test_dockerfile_is_multi_stage_non_root_with_health_check_and_the_readme_command(project):
    _queue, path = project
    dockerfile = (path / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM \S+-slim", dockerfile, re.MULTILINE)) == 2
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "[dev]" not in dockerfile
    assert re.search(r"HEALTHCHECK .*\n?.*/health", dockerfile)
    [cmd] = re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    command = " ".join(yaml.safe_load(cmd))
    assert command == f"python -m {DEFAULT_SLUG}"
    assert command in (path / "README.md").read_text()
    assert ".env" in (path / ".dockerignore").read_text().split()


def test_env_example_lists_every_spec_variable_and_every_variable_the_app_reads(project):
    queue, path = project
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (path / ".env.example").read_text(), re.M))
    assert listed >= SPEC_VARIABLES
    assert variables_the_app_reads(path) <= listed
    redis_url = re.search(r"^REDIS_URL=(.*)$", (path / ".env.example").read_text(), re.M)
    assert bool(redis_url.group(1)) == (queue == "redis"), "the redis variant sets REDIS_URL"


def test_the_wheel_the_image_installs_carries_the_page_its_scripts_and_the_mail_texts(
    project, tmp_path
):
    _queue, path = project
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=path,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Found by a review: the mail texts were left out, and the image mailed the engine's.
    for needed in (
        "templates/index.html",
        "static/app.js",
        "static/vendor/socket.io.min.js",
        "mail/verify.txt",
        "mail/reset.txt",
        "mail/password_changed.txt",
    ):
        assert f"{DEFAULT_SLUG}/{needed}" in names
    assert not any(name.startswith("tests/") for name in names)
