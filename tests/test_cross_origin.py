"""A front end on another origin, in headless Chromium (``tests/js/cross_origin.mjs``):
with its origin in CORS_ALLOWED_ORIGINS its page logs in, reads answers and errors,
takes a socket token and connects; the same page under an unlisted origin reads nothing."""

from __future__ import annotations

import pytest

pytest_plugins = ("tests.running_app",)
pytestmark = pytest.mark.xdist_group("demo-page")


@pytest.fixture(scope="module")
def pages(running_app, run_js, chromium):
    return run_js(
        "cross_origin.mjs",
        running_app.url,
        str(running_app.front_end_port),
        env={"CHROMIUM": chromium},
    )


def test_a_listed_origin_logs_in_and_opens_a_socket(pages):
    listed = pages["listed"]
    assert listed["origin"] != pages["unlisted"]["origin"]
    assert "failed" not in listed, listed
    assert listed["login_status"] == 200
    assert listed["me"] and listed["request_id_readable"] is True
    assert listed["error_code_readable"] == "authentication_required"
    assert listed["socket"] == "connected", listed


def test_an_unlisted_origin_reads_nothing(pages):
    unlisted = pages["unlisted"]
    # The preflight of its first call is refused: the browser's fetch fails.
    assert unlisted.get("failed", "").startswith("TypeError"), unlisted
    assert "login_status" not in unlisted and "socket" not in unlisted
