"""pre_gen rejects bad answers with one line naming the variable; post_gen writes secrets."""

from __future__ import annotations

import ast
import re
import stat
import sys
import tomllib

import pytest

from .conftest import TEMPLATE, run

COOKIECUTTER = [sys.executable, "-m", "cookiecutter", "--no-input"]


@pytest.mark.parametrize(
    ("answer", "variable"),
    [
        ("project_slug=9-Bad slug", "project_slug"),
        ("project_slug=Upper", "project_slug"),
        ("project_slug=class", "project_slug"),
        ("project_slug=tornado", "project_slug"),
        ("project_slug=my-app", "project_slug"),
        ("author_email=not-an-email", "author_email"),
        ("author_email=a@b", "author_email"),
        # Found by a review: modules of the standard library and of the dependencies,
        # which the generated package would shadow (it then cannot start).
        ("project_slug=email", "project_slug"),
        ("project_slug=secrets", "project_slug"),
        ("project_slug=token", "project_slug"),
        ("project_slug=pydantic", "project_slug"),
        ("project_slug=transom_socketio", "project_slug"),
        # Tornado template syntax in the name, written into the pages and mails.
        # (cookiecutter renders answers as Jinja first: raw blocks keep the braces.)
        ("project_name=Chat {% raw %}{{ 1 }}{% endraw %}", "project_name"),
        ("project_name=Chat {% raw %}{% if 1 %}{% endraw %}", "project_name"),
        # Line breaks as Python reads them, which would add lines to .env.
        ("project_name=Chat\u2028TRUST_PROXY_HEADERS=1 #", "project_name"),
        ("project_name=Chat\x85MORE=1", "project_name"),
        ("description=One\u2029Two", "description"),
    ],
)
def test_pre_gen_rejects_a_bad_answer_with_one_line_and_writes_nothing(tmp_path, answer, variable):
    result = run(
        [*COOKIECUTTER, "--output-dir", str(tmp_path), str(TEMPLATE), answer], cwd=tmp_path
    )
    assert result.returncode != 0
    hook_lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(hook_lines) == 1, result.stderr
    assert variable in hook_lines[0]
    assert "must" in hook_lines[0]  # the line states the rule
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("slug", "suggested"),
    [("9-Bad slug", "app_9_bad_slug"), ("Über-Chat", "uber_chat"), ("email", "email_app")],
)
def test_a_refused_slug_comes_with_one_that_generates(tmp_path, slug, suggested):
    refused = run(
        [*COOKIECUTTER, "--output-dir", str(tmp_path), str(TEMPLATE), f"project_slug={slug}"],
        cwd=tmp_path,
    )
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("ERROR:")]
    assert line.endswith(f"for example project_slug={suggested}"), line
    accepted = run(
        [*COOKIECUTTER, "--output-dir", str(tmp_path), str(TEMPLATE), f"project_slug={suggested}"],
        cwd=tmp_path,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / suggested / suggested / "app.py").is_file()


def test_the_default_slug_is_made_valid_from_any_project_name(cookies):
    result = cookies.bake(extra_context={"project_name": "Über-Chat (beta) 2"})
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == "uber_chat_beta_2"


def test_answers_are_data_not_code(cookies):
    # Quotes, backslashes and triple quotes in free-text answers must neither break the
    # hooks nor the generated files: they arrive intact where they are used.
    tricky = 'It\'s "quoted" \\ and """tripled""" <b>'
    result = cookies.bake(
        extra_context={
            "project_name": "Tricky <App>",
            "project_slug": "tricky",
            "description": tricky,
            "author_name": tricky,
        }
    )
    assert result.exit_code == 0, result.exception
    project = tomllib.loads((result.project_path / "pyproject.toml").read_text())["project"]
    assert project["description"] == tricky
    assert project["authors"][0]["name"] == tricky
    html = (result.project_path / "tricky" / "templates" / "index.html").read_text()
    assert "Tricky &lt;App&gt;" in html and "Tricky <App>" not in html
    # The name the OpenAPI document gives the API, written into code as a literal.
    package = ast.parse((result.project_path / "tricky" / "__init__.py").read_text())
    names = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in package.body
        if isinstance(node, ast.Assign)
    }
    assert names["PROJECT_NAME"] == "Tricky <App>"


def test_post_gen_writes_a_fresh_private_env_with_a_strong_secret(cookies):
    first = cookies.bake()
    second = cookies.bake(extra_context={"project_name": "Other App"})
    secrets = []
    for result in (first, second):
        assert result.exit_code == 0, result.exception
        env_file = result.project_path / ".env"
        mode = stat.S_IMODE(env_file.stat().st_mode)
        assert mode == 0o600
        [secret] = re.findall(r"^JWT_SECRET=(.+)$", env_file.read_text(), re.MULTILINE)
        assert len(secret.encode()) >= 32
        secrets.append(secret)
        assert ".env" in (result.project_path / ".gitignore").read_text().splitlines()
        example = (result.project_path / ".env.example").read_text()
        assert re.search(r"^JWT_SECRET=$", example, re.MULTILINE), "the example holds no secret"
    assert secrets[0] != secrets[1]


def test_post_gen_says_what_to_do_next(tmp_path):
    """Found by a new user's review: cookiecutter ends without a word."""
    baked = run([*COOKIECUTTER, "--output-dir", str(tmp_path), str(TEMPLATE)], cwd=tmp_path)
    assert baked.returncode == 0, baked.stderr
    assert "cd transom_app\n" in baked.stdout
    assert "make run" in baked.stdout and "make test" in baked.stdout


def test_generating_again_over_a_project_keeps_its_env(tmp_path):
    """Found by a review: generating the project again (``-f``, even with ``-s``) wrote a
    new .env over the user's, with a new JWT_SECRET and without their settings."""
    command = [*COOKIECUTTER, "--output-dir", str(tmp_path), str(TEMPLATE), "project_slug=keep"]
    first = run(command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / "keep" / ".env"
    kept = env_file.read_text() + "SMTP_URL=smtps://mailer:secret@smtp.example:465\n"
    env_file.write_text(kept)
    for flags in (["-f"], ["-f", "-s"]):
        again = run([*command, *flags], cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert env_file.read_text() == kept
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
