"""The accounts of the demo page of a generated app, driven in headless Chromium.

``tests/js/account_flow.mjs`` drives the Debian ``chromium`` through playwright-core as a
new user walks through them: sign up through the form; the verification mail appears in
the page's development outbox panel (``GET /dev/mail``) with its link clickable; login
before verifying is refused and the page offers to resend the mail; the link
(``/verify?token=...``, the same page) verifies the address; log in, log out; "Forgot
password?" mails a reset link, which opens the page's new-password form
(``/reset?token=...``) and works once; the old password is refused, the new one logs in;
a password change while connected reconnects the page's socket with a fresh token. A
full-page screenshot is kept in test-artifacts/demo-accounts.png.
"""

from __future__ import annotations

import struct

import pytest

# One bake, one install, one running app for every module that uses them.
pytest_plugins = ("tests.running_app",)
# make test's workers (pytest-xdist --dist loadgroup): the flow runs once, on one worker.
pytestmark = pytest.mark.xdist_group("account-page")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The refusals the walk provokes on purpose: login before verifying, the reset link used
# a second time, login with the password the reset replaced.
EXPECTED_HTTP_ERRORS = [
    "403 POST /api/v1/user/login",
    "400 POST /api/v1/user/reset",
    "401 POST /api/v1/user/login",
]


@pytest.fixture(scope="module")
def screenshot(artifacts_dir):
    return artifacts_dir / "demo-accounts.png"


@pytest.fixture(scope="module")
def walk(running_app, run_js, chromium, screenshot):
    screenshot.unlink(missing_ok=True)  # the flow writes it anew
    return run_js("account_flow.mjs", running_app.url, str(screenshot), env={"CHROMIUM": chromium})


def test_every_page_load_has_the_csp_and_the_page_ran_clean(walk):
    page = walk["page"]
    paths = [document["path"] for document in page["documents"]]
    assert {"/", "/verify", "/reset"} <= set(paths), paths
    for document in page["documents"]:
        assert document["status"] == 200, document
        csp = document["csp"] or ""
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, document
    assert page["csp_violations"] == [], page["csp_violations"]
    assert page["page_errors"] == [], page["page_errors"]
    assert page["failed_requests"] == [], page["failed_requests"]
    assert page["notice"] == "", page["notice"]


def test_the_only_failed_requests_are_the_refusals_the_walk_provokes(walk):
    page = walk["page"]
    assert page["http_errors"] == EXPECTED_HTTP_ERRORS, page["http_errors"]
    # Chromium logs each refused request; nothing else reaches the console as an error.
    assert len(page["console_errors"]) == len(EXPECTED_HTTP_ERRORS), page["console_errors"]
    assert all(e.startswith("Failed to load resource") for e in page["console_errors"]), page


def test_sign_up_mails_a_verification_link_shown_in_the_outbox_panel(walk, running_app):
    verify = walk["verify"]
    email = walk["account"]["email"]
    assert verify["outbox_shown"] is True
    assert email in verify["signup_status"], verify["signup_status"]
    assert verify["session_hidden_after_signup"] is True
    mail = verify["mail"]
    assert mail["count"] == 1, mail
    assert mail["subject"].startswith("Confirm your email address"), mail
    assert email in mail["meta"], mail
    [link] = mail["links"]
    assert link.startswith(f"{running_app.url}/verify?token="), link
    assert link in mail["body"]


def test_login_before_verifying_is_refused_and_the_page_resends_the_mail(walk):
    verify = walk["verify"]
    assert "not verified" in verify["unverified_status"], verify["unverified_status"]
    assert verify["resend_shown"] is True
    assert verify["session_hidden_unverified"] is True
    assert "new link" in verify["resend_status"], verify["resend_status"]
    assert verify["resend_hidden_after"] is True
    assert verify["resent"]["count"] == 2, verify["resent"]
    assert verify["resent"]["links"] != verify["mail"]["links"]


def test_the_verification_link_opens_the_page_which_verifies_the_address(walk):
    verify = walk["verify"]
    assert verify["verify_link"] == {"path": "/verify", "has_token": True}
    assert verify["verify_title"] == "Email verification"
    assert verify["verify_status"] == "Your email address is verified: you can log in."
    # The used token leaves the address bar; the outbox keeps its address.
    assert verify["address_after_verify"] == "/"
    assert verify["outbox_address_kept"] == walk["account"]["email"]


def test_a_verified_user_logs_in_and_out(walk):
    verify = walk["verify"]
    assert verify["session"] == {"me_name": walk["account"]["username"], "auth_form_hidden": True}
    assert verify["logged_out"] is True


def test_forgot_password_mails_a_reset_link_shown_in_the_outbox_panel(walk, running_app):
    reset = walk["reset"]
    email = walk["account"]["email"]
    assert reset["forgot_email_prefilled"] == email
    assert email in reset["forgot_status"], reset["forgot_status"]
    assert reset["forgot_form_hidden"] is True
    mail = reset["mail"]
    assert mail["subject"].startswith("Reset your"), mail
    [link] = mail["links"]
    assert link.startswith(f"{running_app.url}/reset?token="), link


def test_the_reset_link_opens_a_new_password_form_and_works_once(walk):
    reset = walk["reset"]
    assert reset["reset_link"] == {"path": "/reset", "has_token": True}
    assert reset["reset_title"] == "Choose a new password"
    assert reset["reset_status"].startswith("Your password was changed"), reset["reset_status"]
    assert reset["reset_form_hidden"] is True
    assert reset["address_after_reset"] == "/"
    assert "password was changed" in reset["changed_mail"]["subject"], reset["changed_mail"]
    assert "unknown, used or expired" in reset["reused_link_status"], reset["reused_link_status"]


def test_after_the_reset_the_old_password_is_refused_and_the_new_one_logs_in(walk):
    after = walk["after_reset"]
    assert after["old_password_notice"] == "invalid username or password"
    assert after["old_password_session_hidden"] is True
    assert after["session"] == {"me_name": walk["account"]["username"], "auth_form_hidden": True}
    assert after["notice_after"] == ""


def test_a_password_change_keeps_the_session_and_reconnects_its_socket(walk):
    change = walk["change"]
    assert change["status"] == "Password changed: your other sessions were signed out."
    assert change["fields_cleared"] == ["", ""]
    # The server closed the page's socket; the page connected again with a fresh token.
    assert change["socket_status"] == "connected"
    assert change["new_socket_tokens"] >= 1, change
    assert change["jwt_still_valid"] is True
    assert (change["login_with_previous"], change["login_with_changed"]) == (401, 200)
    assert change["changed_mails"] == 2, change


def test_a_full_page_screenshot_is_kept(walk, screenshot):
    assert walk["screenshot"]["path"] == str(screenshot)
    data = screenshot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 800, (width, height)
