"""Security headers, secrets kept out of logs, socket CORS, message size and rate limits
(issue 6), checked from the outside with real clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import pytest
import socketio
import tornado.httpclient
import tornado.httpserver
import tornado.testing
import tornado.websocket
from example_app.app import make_app

from transom_socketio import app as application
from transom_socketio import logs
from transom_socketio.config import Settings
from transom_socketio.testing.clients import Api, Response, Sockets, User
from transom_socketio.web.base import BaseHandler

REFUSED = [{"message": "INVALID_TOKEN"}]
SOCKET_TOKEN = "/api/v1/user/sockettoken"
ALLOWED_ORIGIN = "http://allowed.example"


# --- security headers ---------------------------------------------------------------------


class InlineCode(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block: inline scripts, inline
    styles, event-handler attributes and javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self._in = "script"
        if tag == "style":
            self._in = "style"
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.found.append(f"inline <{self._in}>")

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.gen_test
async def test_the_demo_page_has_a_strict_csp_and_needs_no_inline_code(api):
    page = await api.request("GET", "/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    directives = csp_directives(csp)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    # The page must work under that policy: nothing inline that the policy would block.
    parser = InlineCode()
    parser.feed(page.body)
    assert parser.found == []


def assert_json_security_headers(response: Response, label: str) -> None:
    headers = response.headers
    assert headers["Content-Type"].startswith("application/json"), label
    assert headers["X-Content-Type-Options"] == "nosniff", label
    assert headers["Referrer-Policy"] == "no-referrer", label
    assert headers["X-Frame-Options"] == "DENY", label
    assert headers["Cache-Control"] == "no-store", label
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", headers["X-Request-ID"]), label


@pytest.mark.gen_test
async def test_every_json_response_has_the_security_headers_errors_and_404s_included(api, settings):
    user = await api.new_user()
    message = await api.request("POST", "/api/v1/db/message", {"text": "hi"}, token=user.token)
    answers = {
        "200 health": await api.request("GET", "/health"),
        "200 openapi": await api.request("GET", "/api/v1/openapi.json"),
        "200 me": await api.request("GET", "/api/v1/user/me", token=user.token),
        "201 message": message,
        "204 delete": await api.request(
            "DELETE", f"/api/v1/db/message/{message.body['message']['_id']}", token=user.token
        ),
        "400 invalid json": await api.request("POST", "/api/v1/user/login", raw=b"{"),
        "401 no token": await api.request("GET", "/api/v1/user/me"),
        "401 bad credentials": await api.login(user.username, "wrong password"),
        "404 unknown route": await api.request("GET", "/no/such/route"),
        "404 unknown api route": await api.request("DELETE", "/api/v1/nope"),
        "404 unknown message": await api.request(
            "GET", "/api/v1/db/message/" + "0" * 24, token=user.token
        ),
        "405 wrong method": await api.request("PATCH", "/api/v1/user/me", token=user.token),
        "409 taken": await api.signup(email=user.email, password="long enough password"),
        "413 too large": await api.request(
            "POST", "/api/v1/user/signup", raw=b"x" * (settings.max_body_bytes + 1)
        ),
    }
    for label, response in answers.items():
        expected = int(label.split()[0])
        assert response.status == expected, (label, response.body)
        if expected == 204:
            assert response.body is None, label
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            continue
        assert_json_security_headers(response, label)


@pytest.mark.gen_test
async def test_a_sane_request_id_is_echoed_on_errors_too(api):
    for path in ("/health", "/api/v1/user/me", "/no/such/route"):
        response = await api.request("GET", path, headers={"X-Request-ID": "abc-123.x_y"})
        assert response.headers["X-Request-ID"] == "abc-123.x_y", path
    hostile = await api.request("GET", "/api/v1/user/me", headers={"X-Request-ID": "a b<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


# --- logs ---------------------------------------------------------------------------------


def lines(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()} {r.args!r} {vars(r)!r}" for r in records]


# A long-polling client's disconnect waits for the pending poll: keep it short.
@pytest.mark.parametrize(
    "settings_overrides", [{"socketio_ping_interval": 1, "socketio_ping_timeout": 1}]
)
@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.gen_test(timeout=20)
async def test_the_access_log_never_holds_a_socket_token_sent_in_the_query(
    api, sockets, caplog, transport, settings_overrides
):
    caplog.set_level(logging.INFO, logger="tornado.access")
    user = await api.new_user()
    token = await api.socket_token(user)
    client = sockets.new()
    await client.client.connect(
        f"{sockets.base_url}?token={token}", transports=[transport], wait_timeout=10
    )
    assert client.client.connected
    await client.client.disconnect()
    reused = await sockets.refused(query_token=token)
    assert reused.connect_errors == REFUSED

    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    socket_lines = [line for line in access if "/socket.io/" in line]
    assert socket_lines, access
    assert all(f"token={logs.REDACTED}" in line for line in socket_lines), socket_lines
    assert not [line for line in lines(caplog.records) if token in line]


@pytest.mark.gen_test(timeout=20)
async def test_no_log_line_holds_a_jwt_or_socket_token_across_the_realtime_flow(
    api, sockets, debug_logging, caplog
):
    """test_bad_input covers the REST flow; this adds sockets opened and refused."""
    user = await api.new_user()
    by_auth, by_query = await api.socket_token(user), await api.socket_token(user)
    first = await sockets.connect(by_auth)
    second = await sockets.connect(query_token=by_query)
    await api.request("POST", "/api/v1/db/message", {"text": "hello"}, token=user.token)
    await first.wait_for("message")
    await second.wait_for("message")
    assert (await sockets.refused(by_auth)).connect_errors == REFUSED
    assert (await sockets.refused(query_token=by_query)).connect_errors == REFUSED
    assert (await api.request("POST", "/api/v1/user/logout", token=user.token)).status == 200
    await asyncio.wait_for(first.disconnected.wait(), 5)

    everything = lines(caplog.records)
    assert any("socket handshake refused: invalid_token" in line for line in everything)
    secrets = [user.token, by_auth, by_query, user.password]
    assert [line for line in everything if any(s in line for s in secrets)] == []


class Failing(BaseHandler):
    """A handler with a bug, as a user-added route might have."""

    async def get(self) -> None:
        raise RuntimeError("a bug")


@pytest.mark.gen_test
async def test_a_token_in_the_url_of_a_failing_request_is_redacted_in_the_error_log(app, api):
    app.wildcard_router.add_rules([(r"/api/v1/failing", Failing)])
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure_logging("INFO", stream=stream)
    try:
        response = await api.request("GET", "/api/v1/failing?token=s3cr3t-value&page=2")
    finally:
        root.handlers[:], _level = saved
        root.setLevel(saved[1])
    assert response.status == 500
    assert response.error_code == "internal_error"
    output = stream.getvalue()
    assert "Uncaught exception GET /api/v1/failing?token=[redacted]&page=2" in output
    assert "RuntimeError: a bug" in output  # the traceback is still there
    assert "s3cr3t-value" not in output


# --- sockets: CORS and message size -------------------------------------------------------


async def connect_from(sockets: Sockets, token: str, origin: str) -> bool:
    client = sockets.new()
    try:
        await client.client.connect(
            sockets.base_url,
            headers={"Origin": origin},
            auth={"token": token},
            transports=["websocket"],
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        return False
    return client.client.connected


async def upgrade_status(base_url: str, origin: str, **headers: str) -> int:
    """The status of a bare WebSocket upgrade to /socket.io/ from ``origin``."""
    url = f"{base_url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket"
    request = tornado.httpclient.HTTPRequest(url, headers={"Origin": origin, **headers})
    try:
        connection = await tornado.websocket.websocket_connect(request)
    except tornado.httpclient.HTTPClientError as error:
        return error.code
    connection.close()
    return 101


async def polling_open(api: Api, origin: str, **headers: str) -> Response:
    return await api.request(
        "GET", "/socket.io/?EIO=4&transport=polling", headers={"Origin": origin, **headers}
    )


@pytest.mark.gen_test(timeout=20)
async def test_by_default_only_the_same_origin_may_open_a_socket(api, sockets, base_url):
    user = await api.new_user()
    token = await api.socket_token(user)
    assert not await connect_from(sockets, token, "http://evil.example")
    assert not await connect_from(sockets, token, ALLOWED_ORIGIN)
    assert await upgrade_status(base_url, "http://evil.example") == 403
    foreign = await polling_open(api, "http://evil.example")
    assert foreign.status == 400
    assert "Access-Control-Allow-Origin" not in foreign.headers
    # The refused attempts never reached the handshake: the token is still good.
    assert await connect_from(sockets, token, base_url)


@pytest.mark.parametrize("settings_overrides", [{"cors_allowed_origins": (ALLOWED_ORIGIN,)}])
@pytest.mark.gen_test(timeout=20)
async def test_cors_allowed_origins_and_the_same_origin_may_open_a_socket(
    api, sockets, base_url, settings_overrides
):
    user = await api.new_user()
    token = await api.socket_token(user)
    for origin in ("http://evil.example", "https://allowed.example", ALLOWED_ORIGIN + ".evil.io"):
        assert not await connect_from(sockets, token, origin), origin
        assert await upgrade_status(base_url, origin) == 403, origin
        assert (await polling_open(api, origin)).status == 400, origin
    assert await upgrade_status(base_url, ALLOWED_ORIGIN) == 101
    assert await connect_from(sockets, token, ALLOWED_ORIGIN)
    assert await connect_from(sockets, await api.socket_token(user), base_url)
    allowed = await polling_open(api, ALLOWED_ORIGIN)
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


FORWARDED_HOST = "X-Forwarded-Host"
FORWARDED_PROTO = "X-Forwarded-Proto"


async def websocket_opens(base_url: str, origin: str, headers: dict[str, str]) -> bool:
    """Whether a WebSocket opening a session from ``origin`` gets engine.io's OPEN packet.
    (Tornado accepts an upgrade whose origin names the request's host in another
    scheme; engine.io then refuses the session and the WebSocket closes.)"""
    url = f"{base_url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket"
    request = tornado.httpclient.HTTPRequest(url, headers={"Origin": origin, **headers})
    try:
        connection = await tornado.websocket.websocket_connect(request)
    except tornado.httpclient.HTTPClientError:
        return False
    try:
        message = await asyncio.wait_for(connection.read_message(), 5)
    finally:
        connection.close()
    return isinstance(message, str) and message.startswith("0")


async def both_transports(
    api: Api, base_url: str, origin: str, headers: dict[str, str]
) -> tuple[int, bool]:
    """(long-polling status, whether a WebSocket opens) of a request opening a session."""
    polling = await polling_open(api, origin, **headers)
    return polling.status, await websocket_opens(base_url, origin, headers)


@pytest.mark.gen_test(timeout=20)
async def test_forwarded_headers_a_client_sends_do_not_make_its_origin_the_same(api, base_url):
    # Issue 20 (audit): engine.io checked a long-polling request's origin against the
    # scheme of X-Forwarded-Proto and the host of X-Forwarded-Host as the client sent them
    # (its Tornado driver reads them whatever TRUSTED_PROXY_HOPS says), while a WebSocket
    # upgrade was checked against the request's own: two readings of one origin.
    host = base_url.split("://", 1)[1]
    forged = {FORWARDED_HOST: "evil.example", FORWARDED_PROTO: "https"}
    assert await both_transports(api, base_url, "https://evil.example", forged) == (400, False)
    assert await both_transports(api, base_url, f"https://{host}", forged) == (400, False)
    assert await both_transports(api, base_url, base_url, forged) == (200, True)


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxy_hops": 1}])
@pytest.mark.gen_test(timeout=20)
async def test_behind_a_proxy_both_transports_read_the_scheme_the_proxy_appended(
    api, base_url, settings_overrides
):
    # A client's own X-Forwarded-Proto, then the one its proxy appended (the right-most).
    host = base_url.split("://", 1)[1]
    appended = {FORWARDED_PROTO: "http, https", "X-Forwarded-For": "203.0.113.9"}
    assert await both_transports(api, base_url, f"https://{host}", appended) == (200, True)
    assert await both_transports(api, base_url, f"http://{host}", appended) == (400, False)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.gen_test(timeout=30)
async def test_a_message_over_the_size_limit_disconnects_its_sender_only(
    api, sockets, settings, transport
):
    ada, bob = await api.new_user(), await api.new_user()
    sender = sockets.new()
    await sender.client.connect(
        sockets.base_url,
        auth={"token": await api.socket_token(ada)},
        transports=[transport],
        wait_timeout=10,
    )
    bystander = await sockets.connect(await api.socket_token(bob))
    limit = settings.socketio_max_message_bytes

    await sender.client.emit("note", "x" * (limit // 2))  # under the limit: still connected
    await asyncio.sleep(0.3)
    assert sender.client.connected

    await sender.client.emit("note", "x" * (limit + 1024))
    await asyncio.wait_for(sender.disconnected.wait(), 10)
    assert not sender.client.connected

    # Everyone else is still served: the bystander gets the next broadcast, and a new
    # socket connects.
    assert bystander.client.connected
    posted = await api.request("POST", "/api/v1/db/message", {"text": "after"}, token=bob.token)
    assert posted.status == 201
    assert (await bystander.wait_for("message"))[-1]["text"] == "after"
    assert (await sockets.connect(await api.socket_token(ada))).client.connected


# --- rate limits --------------------------------------------------------------------------


def assert_rate_limited(response: Response) -> int:
    assert response.status == 429, response.body
    assert response.error_code == "too_many_requests"
    assert "token" not in response.body
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    assert response.body["error"]["retry_after"] == retry_after
    return retry_after


async def issue(api: Api, user: User) -> Response:
    return await api.request("POST", SOCKET_TOKEN, token=user.token)


@pytest.mark.parametrize("settings_overrides", [{"socket_tokens_per_minute_per_user": 4}])
@pytest.mark.gen_test
async def test_socket_token_issue_is_limited_per_user(api, settings_overrides):
    ada, bob = await api.new_user(), await api.new_user()
    # 4 a minute in bursts of 2: the third request in a row is refused.
    assert [(await issue(api, ada)).status for _ in range(2)] == [200, 200]
    for _ in range(3):
        retry_after = assert_rate_limited(await issue(api, ada))
        assert retry_after <= 15  # one token every 15 s
    # Another user is unaffected; a second login of the same user is not a way around it.
    assert (await issue(api, bob)).status == 200
    again = await api.login(ada.username)
    second_session = User(ada.id, ada.username, ada.email, again.body["token"])
    assert_rate_limited(await issue(api, second_session))


@pytest.mark.parametrize("settings_overrides", [{"socket_tokens_per_minute_per_address": 4}])
@pytest.mark.gen_test
async def test_socket_token_issue_is_limited_per_address(api, settings_overrides):
    users = [await api.new_user() for _ in range(3)]
    assert (await issue(api, users[0])).status == 200
    assert (await issue(api, users[1])).status == 200
    assert_rate_limited(await issue(api, users[2]))


@pytest.mark.parametrize("settings_overrides", [{"handshakes_per_minute_per_address": 4}])
@pytest.mark.gen_test(timeout=20)
async def test_handshakes_are_limited_per_address_and_the_reason_is_logged(
    api, sockets, caplog, settings_overrides
):
    caplog.set_level(logging.INFO)
    user = await api.new_user()
    assert (await sockets.connect(await api.socket_token(user))).client.connected
    assert (await sockets.refused("A" * 43)).connect_errors == REFUSED  # counts too
    # The burst (2) is spent: even a valid token is refused now, with the reason logged.
    refused = await sockets.refused(await api.socket_token(user))
    assert refused.connect_errors == REFUSED
    reasons = [r.getMessage() for r in caplog.records if "handshake refused" in r.getMessage()]
    assert any("invalid_token" in reason for reason in reasons), reasons
    assert any("rate_limited" in reason for reason in reasons), reasons
    # The REST API is not part of that budget.
    assert (await api.request("GET", "/health")).status == 200


# --- JWT_SECRET rotation ------------------------------------------------------------------

SECRET_B = "the-new-secret-" + "b" * 40


@contextlib.asynccontextmanager
async def serving(settings: Settings, **changes: Any) -> AsyncIterator[Api]:
    """Another process of the same deployment (same database), with other settings."""
    other = make_app(settings.model_copy(update=changes))
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(other)
    server.add_socket(sock)
    try:
        yield Api(tornado.httpclient.AsyncHTTPClient(), f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        await application.stop(other)


@pytest.mark.gen_test(timeout=30)
async def test_rotating_jwt_secret_keeps_sessions_until_the_previous_secret_is_removed(
    api, settings
):
    """SECURITY.md's procedure, with three processes on one database: the running one
    (secret A), the restarted one (JWT_SECRET=B, JWT_PREVIOUS_SECRET=A), and the one
    after the previous secret is removed (B only)."""
    user = await api.new_user()  # logged in with secret A
    old_jwt = user.token
    async with serving(
        settings, jwt_secret=SECRET_B, jwt_previous_secret=settings.jwt_secret
    ) as rotated:
        me = await rotated.request("GET", "/api/v1/user/me", token=old_jwt)
        assert me.status == 200
        assert me.body["me"]["_id"] == user.id
        issued = await rotated.request("POST", SOCKET_TOKEN, token=old_jwt)
        assert issued.status == 200
        new_jwt = (await rotated.login(user.username)).body["token"]
        # The old process does not know B: new logins happen after every process restarted.
        assert (await api.request("GET", "/api/v1/user/me", token=new_jwt)).status == 401
    async with serving(settings, jwt_secret=SECRET_B, jwt_previous_secret=None) as rotated:
        refused = await rotated.request("GET", "/api/v1/user/me", token=old_jwt)
        assert refused.status == 401
        assert refused.error_code == "invalid_token"
        assert (await rotated.request("GET", "/api/v1/user/me", token=new_jwt)).status == 200
