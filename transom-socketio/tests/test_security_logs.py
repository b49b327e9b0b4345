"""Issue 14 (and the ``sid`` rule of issue 13): log redaction by meaning, not spelling.

A query parameter is redacted when its name, once percent-decoded and case-folded,
means a credential, in the access log, in Tornado's "Uncaught exception" lines and
in JSON lines (message, traceback and extra fields alike).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl

import hypothesis
import pytest
import socketio
from hypothesis import strategies as st

from transom_socketio import logs
from transom_socketio.logs import REDACTED, redact_text, redact_url
from transom_socketio.web.base import BaseHandler

SECRET = "s3cr3tvalue"


@pytest.mark.parametrize(
    "query",
    [
        "%74oken=S",
        "tok%65n=S",
        "TOK%45N=S",
        "%54%4F%4B%45%4E=S",
        "%2574oken=S",  # encoded twice
        "token=other&token=S",  # repeated
        "EIO=4&transport=polling&sid=S",  # engine.io's session id (issue 13)
        "%73id=S",
        "Access_Token=S",
        "access-token=S",
        "jwt=S",
        "auth=S",
        "password=S",
        "pass%77ord=S",
        "secret=S",
        "api_key=S",
        "a=1;token=S",
        "token=S#fragment",
    ],
)
def test_secret_parameters_are_redacted_whatever_their_spelling(query):
    redacted = redact_url(f"/socket.io/?{query.replace('S', SECRET)}")
    assert SECRET not in redacted
    assert REDACTED in redacted


def test_other_parameters_and_the_path_are_kept():
    uri = "/api/v1/db/message?limit=5&before=abc&mytoken_hint=x"
    assert redact_url(uri) == uri
    assert redact_text("no query here: token=x") == "no query here: token=x"


def test_redaction_is_idempotent():
    once = redact_url(f"/x?token={SECRET}&page=2")
    assert redact_text(once) == once == f"/x?token={REDACTED}&page=2"


# Issue 20: what came before a token ended the query for the redaction ("#": a fragment;
# a quote: the end of the query in a line of text), while the server read on.
AROUND = ["'#", '"#', "#", "'", '"', "<", ">", "`", "#'", "%23", "?", ";", "\\", "'#\"<>`"]


@pytest.mark.parametrize("junk", AROUND)
def test_a_token_after_any_character_is_redacted_as_the_server_reads_it(junk):
    for query in (
        f"EIO=4&x={junk}&token={SECRET}",
        f"EIO=4&x=1{junk}&%74oken={SECRET}",
        f"x{junk}=1&sid={SECRET}&t=1",
        f"{junk}&access_token={SECRET}",
    ):
        read = dict(parse_qsl(query, keep_blank_values=True))  # what the server reads
        assert SECRET in "".join(read.values())
        for line in (
            redact_url(f"/socket.io/?{query}"),
            redact_text(f"Uncaught exception GET /socket.io/?{query} (127.0.0.1)"),
            redact_text(f"HTTPServerRequest(method='GET', uri={f'/x?{query}'!r}, version='1.1')"),
            redact_text(f"200 GET /x?{query}"),
        ):
            assert SECRET not in line, line


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@hypothesis.given(
    fields=st.lists(
        st.tuples(
            st.sampled_from(["token", "%74oken", "to+ken", "sid", "x", "EIO", "a;token", ""]),
            st.text(alphabet="'\"#<>`;=%?+ab", max_size=6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_whatever_the_server_reads_as_a_secret_is_redacted(fields):
    """Every value the server's reading (realtime/eio_query.py's, parse_qsl's) gives a
    name meaning a credential is absent from the redacted URL and line."""
    query = "&".join(f"{name}={junk}{SECRET}{index}" for index, (name, junk) in enumerate(fields))
    redacted = [redact_url(f"/socket.io/?{query}"), redact_text(f"GET /x?{query} (1.2.3.4)")]
    for name, value in parse_qsl(query, keep_blank_values=True):
        if logs.secret_parameter(name):
            assert all(value not in line for line in redacted), (query, redacted)


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The app's own logging set-up, text or JSON (``request.param``), into a buffer."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure_logging("DEBUG", getattr(request, "param", "text"), stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


class Failing(BaseHandler):
    async def get(self) -> None:
        raise RuntimeError("a bug")


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
@pytest.mark.gen_test
async def test_encoded_token_names_and_engineio_sids_never_reach_a_log_line(
    app, api, http_client, base_url, captured
):
    app.wildcard_router.add_rules([(r"/api/v1/failing", Failing)])
    user = await api.new_user()
    token = await api.socket_token(user)
    # The handshake reads the token by meaning too (the query string is decoded).
    opened = await http_client.fetch(
        f"{base_url}/socket.io/?EIO=4&transport=polling&%74oken={token}", raise_error=False
    )
    assert opened.code == 200
    sid = json.loads(opened.body.decode()[1:])["sid"]
    polled = f"{base_url}/socket.io/?EIO=4&transport=polling&s%69d={sid}"
    await http_client.fetch(polled, method="POST", body=b"40", raise_error=False)
    await http_client.fetch(
        f"{base_url}/socket.io/?EIO=4&transport=polling&sid={sid}",
        method="POST",
        body=b"1",
        raise_error=False,
    )
    await api.request("GET", f"/api/v1/failing?tok%65n={SECRET}&page=2")
    await api.request("GET", f"/nope?%2574oken={SECRET}")
    logging.getLogger("custom").warning(
        "fetched %s", f"/x?TOKEN={SECRET}", extra={"url": f"/y?%74oken={SECRET}", "sid": sid}
    )

    output = captured.getvalue()
    assert "Uncaught exception GET /api/v1/failing?tok%65n=" in output
    assert "RuntimeError: a bug" in output
    for secret in (token, sid, SECRET, user.token):
        assert secret not in output, re.findall(rf".*{re.escape(secret)}.*", output)


async def raw_get(port: int, target: str) -> bytes:
    """A GET with ``target`` sent byte for byte (an HTTP client would escape it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
@pytest.mark.gen_test
async def test_a_token_behind_a_quote_and_a_hash_never_reaches_a_log_line(
    app, api, http_port, captured
):
    app.wildcard_router.add_rules([(r"/api/v1/failing", Failing)])
    user = await api.new_user()
    token = await api.socket_token(user)
    # The server reads this token (the session opens with it); the log must not.
    opened = await raw_get(http_port, f"/socket.io/?EIO=4&transport=polling&x='#&token={token}")
    assert opened.startswith(b"HTTP/1.1 200")
    for junk in AROUND:
        await raw_get(http_port, f"/api/v1/nope?x={junk}&access_token={SECRET}")
        await raw_get(http_port, f"/api/v1/failing?a={junk}&%74oken={SECRET}")
    output = captured.getvalue()
    assert "Uncaught exception GET /api/v1/failing?a=" in output
    assert token not in output and SECRET not in output, output


@pytest.mark.parametrize("captured", ["text"], indirect=True)
@pytest.mark.gen_test
async def test_a_request_line_cannot_break_a_text_log_line(app, api, http_port, captured):
    """Found by a review: Tornado reads a request line's bytes 0x80-0xFF as Latin-1, so a
    raw 0x85 reached the text log as U+0085 (NEL), a line break to some readers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    line = b"GET /api/v1/nope\x85FORGED\x9b[2J HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    writer.write(line)
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 404")
    [logged] = [entry for entry in captured.getvalue().splitlines() if "/api/v1/nope" in entry]
    assert "/api/v1/nope\\x85FORGED\\x9b[2J" in logged
    assert not any(0x7F <= ord(ch) <= 0x9F for ch in captured.getvalue())


@pytest.mark.parametrize("captured", ["json"], indirect=True)
def test_json_extras_named_like_secrets_are_redacted(captured):
    logging.getLogger("custom").info(
        "login", extra={"password": SECRET, "nested": {"jwt": SECRET, "ok": 1}, "n": 3}
    )
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["password"] == REDACTED
    assert line["nested"] == {"jwt": REDACTED, "ok": 1}
    assert line["n"] == 3


@pytest.mark.gen_test
async def test_a_query_token_is_read_by_meaning_and_a_repeated_one_is_refused(api, sockets):
    # Decision (SECURITY.md): "?%74oken=" is "?token=" once decoded, as engine.io reads
    # it; it is accepted, and redacted like "?token=" (test above).
    user = await api.new_user()
    encoded = sockets.new()
    await encoded.client.connect(
        f"{sockets.base_url}?%74oken={await api.socket_token(user)}",
        transports=["websocket"],
        wait_timeout=10,
    )
    assert encoded.client.connected
    first, second = await api.socket_token(user), await api.socket_token(user)
    repeated = sockets.new()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await repeated.client.connect(
            f"{sockets.base_url}?token={first}&token={second}",
            transports=["websocket"],
            wait_timeout=10,
        )
    # Refused by the transport (400, realtime/eio_query.py) before any handshake: the
    # server never chose one of the two, and neither token was spent.
    assert {"message": "INVALID_TOKEN"} not in repeated.connect_errors
    for token in (first, second):
        assert (await sockets.connect(token)).client.connected


@pytest.mark.parametrize("captured", ["text"], indirect=True)
@pytest.mark.gen_test
async def test_an_access_line_reads_as_the_standard_formatter_writes_it(api, captured):
    user = await api.new_user()
    await api.socket_token(user)
    lines = [line for line in captured.getvalue().splitlines() if "sockettoken" in line]
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO tornado\.access: "
        r"200 POST /api/v1/user/sockettoken \(127\.0\.0\.1\) \d+\.\d\dms",
        lines[0],
    ), lines[0]


def test_text_lines_carry_the_time_the_standard_formatter_gives():
    # The text formatter formats the time up to the second once per second: lines in
    # the same second, the next one, and an earlier one again.
    ours, stock = logs.RedactingFormatter(logs.TEXT_FORMAT), logging.Formatter(logs.TEXT_FORMAT)
    for created in (1_700_000_000.125, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.5):
        record = logging.makeLogRecord(
            {"msg": "m", "created": created, "msecs": (created - int(created)) * 1000}
        )
        assert ours.format(record) == stock.format(record)
