"""CORS for the REST API (CORS_ALLOWED_ORIGINS): a front end on another origin calls the
API from the browser; no other origin's page can read an answer or pass a preflight."""

from __future__ import annotations

import pytest

from transom_socketio.testing.clients import Api

FRONT_END = "https://app.example"
OTHER = "https://evil.example"
LISTED = [{"cors_allowed_origins": (FRONT_END,)}]
ANY_SOCKET = [{"cors_allowed_origins": ("*",)}]


async def preflight(api: Api, path: str, origin: str, method: str = "POST"):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return await api.request("OPTIONS", path, headers=headers)


@pytest.mark.parametrize("settings_overrides", LISTED)
@pytest.mark.gen_test(timeout=30)
async def test_a_listed_origin_passes_the_preflight_before_authentication(api):
    for path, methods in (
        ("/api/v1/user/login", "POST"),
        ("/api/v1/user/me", "GET, HEAD"),  # an authenticated route: no 401 to a preflight
        ("/api/v1/db/message", "GET, HEAD, POST"),
    ):
        answer = await preflight(api, path, FRONT_END)
        assert answer.status == 204, (path, answer.body)
        assert answer.headers["Access-Control-Allow-Origin"] == FRONT_END
        assert answer.headers["Access-Control-Allow-Methods"] == methods, path
        allowed = answer.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "if-match"} <= set(allowed.split(", "))
        assert answer.headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Credentials" not in answer.headers
        assert answer.body is None


@pytest.mark.parametrize("settings_overrides", LISTED)
@pytest.mark.gen_test(timeout=30)
async def test_a_listed_origin_reads_the_answers_and_the_errors(api):
    user = await api.new_user()
    origin = {"Origin": FRONT_END}
    me = await api.request("GET", "/api/v1/user/me", token=user.token, headers=origin)
    assert me.status == 200 and me.body["me"]["_id"] == user.id
    refused = await api.request("GET", "/api/v1/user/me", headers=origin)
    assert refused.status == 401 and refused.body["error"]["code"] == "authentication_required"
    for answer in (me, refused):
        assert answer.headers["Access-Control-Allow-Origin"] == FRONT_END
        exposed = answer.headers["Access-Control-Expose-Headers"]
        assert "ETag" in exposed and "X-Request-ID" in exposed
        assert answer.headers["Vary"] == "Origin"


@pytest.mark.parametrize("settings_overrides", [*LISTED, *ANY_SOCKET, {}], ids=str)
@pytest.mark.gen_test(timeout=30)
async def test_any_other_origin_is_refused_and_told_nothing(api, settings_overrides):
    user = await api.new_user()
    refused = await preflight(api, "/api/v1/user/login", OTHER)
    assert refused.status == 403
    assert refused.body["error"]["code"] == "origin_not_allowed"
    # The listed origin's name with something after it is another origin.
    assert (await preflight(api, "/api/v1/user/login", FRONT_END + ".evil.io")).status == 403
    answered = await api.request(
        "GET", "/api/v1/user/me", token=user.token, headers={"Origin": OTHER}
    )
    assert answered.status == 200  # a request a browser sends without a preflight...
    for answer in (refused, answered):  # ...whose answer the page may not read
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert "Access-Control-Allow-Methods" not in answer.headers


@pytest.mark.gen_test(timeout=30)
async def test_without_listed_origins_answers_carry_no_cors_header_and_options_is_405(api):
    answer = await api.request("POST", "/api/v1/user/login", {"login": "x", "password": "y"})
    assert not [name for name in answer.headers if name.lower().startswith("access-control")]
    assert "Vary" not in answer.headers
    plain = await api.request("OPTIONS", "/api/v1/user/login")  # not a preflight
    assert plain.status == 405


@pytest.mark.parametrize("settings_overrides", [*LISTED, *ANY_SOCKET], ids=str)
@pytest.mark.gen_test(timeout=30)
async def test_socket_io_answers_allow_no_credentials(api, settings_overrides):
    """engine.io allows credentials by default: its answers to another origin said
    ``Access-Control-Allow-Credentials: true``, to any origin with ``*``. Nothing of the
    app's rides on a cookie, and its notes say no credentials are allowed (found by a
    review)."""
    answer = await api.request(
        "GET", "/socket.io/?EIO=4&transport=polling", headers={"Origin": FRONT_END}
    )
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "Access-Control-Allow-Credentials" not in answer.headers
