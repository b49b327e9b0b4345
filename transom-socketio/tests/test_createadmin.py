"""``python -m example_app createadmin --email E --username U`` as an operator runs it:
a child process on the test's database, the password from ADMIN_PASSWORD or, with no
terminal, typed twice on standard input. The administrator it creates logs in over
HTTP and uses the admin API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from transom_socketio.testing.clients import Api

PROJECT_ROOT = Path(__file__).resolve().parent  # the folder holding example_app
ADMIN_PASSWORD = "admin passphrase 42"
TIMEOUT = 60.0


def environment(settings: Any, **overrides: str) -> dict[str, str]:
    """The caller's environment without database, secret or admin settings; the test's
    database and secret, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MONGODB_", "JWT_", "ADMIN_", "SMTP_"))
    }
    env.update(
        {
            "MONGODB_URI": settings.mongodb_uri,
            "MONGODB_DB": settings.mongodb_db,
            "JWT_SECRET": settings.jwt_secret,
            "APP_ENV": "test",
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
    )
    return env


async def createadmin(
    settings: Any, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``createadmin`` to its end, in a session of its own: it has no terminal, so
    getpass reads standard input (``stdin``, else nothing)."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 (this suite's own arguments)
            [sys.executable, "-m", "example_app", "createadmin", *args],
            cwd=PROJECT_ROOT,
            env=environment(settings, **env),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            start_new_session=True,  # no controlling terminal: /dev/tty cannot be opened
        )

    # In a thread: the app the test talks to keeps serving on this event loop.
    return await asyncio.to_thread(run)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    errors = [line for line in lines(result.stderr) if line.startswith("error")]
    assert errors == [expected] or (
        expected.endswith("...") and len(errors) == 1 and errors[0].startswith(expected[:-3])
    ), result.stderr
    assert "Traceback" not in result.stderr


async def user_count(db: Any) -> int:
    return await db["users"].count_documents({})


async def assert_is_a_working_administrator(api: Api, db: Any, login: str, password: str) -> None:
    """Logs in with ``password``; verified, in ``admin``, and the admin API answers it."""
    logged_in = await api.login(login, password)
    assert logged_in.status == 200, logged_in.body
    token = logged_in.body["token"]
    me = (await api.request("GET", "/api/v1/user/me", token=token)).body["me"]
    assert (me["groups"], me["verified"]) == (["admin"], True)
    listed = await api.request("GET", "/api/v1/admin/users", token=token)
    assert listed.status == 200, listed.body
    assert me["_id"] in [user["_id"] for user in listed.body["users"]]
    member = await api.new_user("member")
    changed = await api.request(
        "PUT", f"/api/v1/admin/users/{member.id}/groups", {"groups": ["staff"]}, token=token
    )
    assert (changed.status, changed.body["user"]["groups"]) == (200, ["staff"])
    stored = await db["users"].find_one({"_id": ObjectId(me["_id"])})
    assert password not in repr(stored)


@pytest.mark.gen_test(timeout=120)
async def test_createadmin_with_admin_password_creates_a_verified_administrator(api, db, settings):
    result = await createadmin(
        settings,
        "--email",
        "root@example.com",
        "--username",
        "root",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    (line,) = lines(result.stdout)
    assert "root" in line and "root@example.com" in line
    assert "Traceback" not in result.stderr
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    stored = await db["users"].find_one({"username": "root"})
    assert stored is not None
    assert str(stored["_id"]) in line
    assert (stored["groups"], stored["verified"], stored["email"]) == (
        ["admin"],
        True,
        "root@example.com",
    )
    await assert_is_a_working_administrator(api, db, "root", ADMIN_PASSWORD)
    assert (await api.login("root@example.com", ADMIN_PASSWORD)).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_a_second_run_with_a_taken_email_or_username_fails_with_one_line(api, db, settings):
    first = await createadmin(
        settings,
        "--email",
        "root@example.com",
        "--username",
        "root",
        ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    assert first.returncode == 0, first.stderr

    again = await createadmin(
        settings,
        "--email",
        "ROOT@Example.com",
        "--username",
        "root2",
        ADMIN_PASSWORD="another passphrase",
    )
    assert_one_error_line(again, "error: an account with this email already exists")
    same_name = await createadmin(
        settings,
        "--email",
        "other@example.com",
        "--username",
        "ROOT",
        ADMIN_PASSWORD="another passphrase",
    )
    assert_one_error_line(same_name, "error: this username is already taken")
    assert await user_count(db) == 1
    # The first administrator's password is unchanged.
    assert (await api.login("root", ADMIN_PASSWORD)).status == 200
    assert (await api.login("root", "another passphrase")).status == 401


@pytest.mark.parametrize(
    ("email", "username", "password", "names"),
    [
        ("not-an-email", "root", ADMIN_PASSWORD, "email"),
        ("root@", "root", ADMIN_PASSWORD, "email"),
        ("root@example.com", "root", "short", "password"),
        ("root@example.com", "a b", ADMIN_PASSWORD, "username"),
        ("root@example.com", "x", ADMIN_PASSWORD, "username"),
    ],
)
@pytest.mark.gen_test(timeout=120)
async def test_a_bad_email_username_or_password_fails_with_one_line_and_creates_nothing(
    api, db, settings, email, username, password, names
):
    result = await createadmin(
        settings, "--email", email, "--username", username, ADMIN_PASSWORD=password
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert lines(result.stderr) == [lines(result.stderr)[0]]
    assert result.stderr.startswith("error: ")
    assert names in result.stderr
    assert password not in result.stderr or password in (email, username)
    assert await user_count(db) == 0


@pytest.mark.gen_test(timeout=120)
async def test_without_admin_password_and_no_terminal_the_password_is_read_twice_from_stdin(
    api, db, settings
):
    result = await createadmin(
        settings,
        "--email",
        "root@example.com",
        "--username",
        "root",
        stdin=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n",
        ADMIN_PASSWORD="",  # set but empty: asked for
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    (line,) = lines(result.stdout)
    assert "root@example.com" in line
    assert "Password" in result.stderr  # the prompts, on the error stream
    assert ADMIN_PASSWORD not in result.stdout + result.stderr  # not echoed
    await assert_is_a_working_administrator(api, db, "root", ADMIN_PASSWORD)


@pytest.mark.gen_test(timeout=120)
async def test_two_different_passwords_on_stdin_fail_with_one_line_and_create_nothing(
    api, db, settings
):
    result = await createadmin(
        settings,
        "--email",
        "root@example.com",
        "--username",
        "root",
        stdin=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}!\n",
    )
    assert_one_error_line(result, "error: the two passwords differ")
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    assert await user_count(db) == 0


@pytest.mark.gen_test(timeout=120)
async def test_no_password_at_all_fails_with_one_line_and_creates_nothing(api, db, settings):
    # No ADMIN_PASSWORD, no terminal and nothing on standard input: getpass meets EOF.
    result = await createadmin(
        settings, "--email", "root@example.com", "--username", "root", stdin=""
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    # The message ends the error stream (after the unanswered prompt, on its line).
    message = "error: no password given: type it at the prompt or set ADMIN_PASSWORD"
    assert result.stderr.count("error:") == 1, result.stderr
    assert lines(result.stderr)[-1].endswith(message), result.stderr
    assert await user_count(db) == 0
