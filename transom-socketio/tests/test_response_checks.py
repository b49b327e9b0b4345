"""Issue 21: in development and tests, every API answer is checked against the status and
model its ``@operation`` declares (web/response_checks.py). A mismatch is logged at ERROR
without any value and, under APP_ENV=test, answered 500 ``response_mismatch``; in
production nothing is checked."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pytest
from example_app.models.message import ENTITY as MESSAGE
from pydantic import Field

from transom_socketio.config import Settings
from transom_socketio.shapes import PublicShape
from transom_socketio.web import response_checks
from transom_socketio.web.base import BaseHandler
from transom_socketio.web.errors import ApiError
from transom_socketio.web.operations import Operation, Response, envelope, operation

SECRET = "s3cret-value-never-logged"
CHECKS_LOGGER = "transom_socketio.web.response_checks"


class Answer(PublicShape):
    """An answer"""

    name: str
    count: int


class Presence(PublicShape):
    online: bool
    sockets: Annotated[int, Field(ge=0)]


class PresenceByUser(PublicShape):
    presence: dict[str, Presence]


# What each route of ShapesHandler writes, by the ``case`` query argument.
ANSWERS: dict[str, tuple[int, Any]] = {
    "right": (200, {"name": "ok", "count": 1}),
    "wrong_type": (200, {"name": "ok", "count": SECRET}),
    "string_number": (200, {"name": "ok", "count": "1"}),
    "extra_key": (200, {"name": "ok", "count": 1, "password_hash": SECRET}),
    "missing": (200, {"name": SECRET}),
    "undeclared_status": (202, {"name": "ok", "count": 1}),
    "not_an_object": (200, [SECRET]),
}


class ShapesHandler(BaseHandler):
    @operation(
        "Answer what the test asks for",
        operation_id="shapes",
        responses={200: Answer},
        errors=(503,),
    )
    async def get(self) -> None:
        case = self.get_query_argument("case")
        if case == "declared_error":
            raise ApiError(503, "busy", "try again")
        if case == "undeclared_error":
            raise ApiError(409, "conflict", "not declared here")
        if case == "crash":
            raise RuntimeError("a bug")
        status, payload = ANSWERS[case]
        self.write_json(payload, status=status)


class PresenceLikeHandler(BaseHandler):
    @operation("Keys are data", responses={200: PresenceByUser})
    async def get(self) -> None:
        self.write_json({"presence": {SECRET: {"online": "yes", "sockets": 1}}})


class NoBodyHandler(BaseHandler):
    @operation("Nothing to say", operation_id="noBody", responses={204: Response("done")})
    async def delete(self) -> None:
        self.set_status(204)
        self.finish()

    @operation("Says too much", operation_id="tooMuch", responses={200: Response("done")})
    async def post(self) -> None:
        self.write_json({"secret": SECRET})


class UndeclaredHandler(BaseHandler):
    """A handler without ``@operation``: nothing to check it against."""

    async def get(self) -> None:
        self.write_json({"anything": SECRET})


@pytest.fixture
def checked_routes(app):
    app.wildcard_router.add_rules(
        [
            (r"/api/v1/shapes", ShapesHandler),
            (r"/api/v1/presence-like", PresenceLikeHandler),
            (r"/api/v1/nobody", NoBodyHandler),
            (r"/api/v1/undeclared", UndeclaredHandler),
        ]
    )


def mismatch_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == CHECKS_LOGGER and r.levelno == logging.ERROR]


def assert_no_secret(caplog: pytest.LogCaptureFixture, *answers: Any) -> None:
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    for answer in answers:
        assert SECRET not in str(answer.body)


@pytest.mark.gen_test
async def test_a_right_answer_goes_out_unchanged(api, checked_routes, caplog):
    answer = await api.request("GET", "/api/v1/shapes?case=right")
    assert (answer.status, answer.body) == (200, {"name": "ok", "count": 1})
    head = await api.request("HEAD", "/api/v1/shapes?case=right")
    assert head.status == 200
    assert mismatch_lines(caplog) == []


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("case", "field", "problem"),
    [
        ("wrong_type", "count", "count fails the declared model (int_type)"),
        ("string_number", "count", "count fails the declared model (int_type)"),
        ("extra_key", "password_hash", "password_hash is not declared"),
        ("missing", "count", "count is missing"),
        ("not_an_object", None, "the body fails the declared model (model_type)"),
    ],
)
async def test_a_wrong_shape_answers_500_and_logs_the_field_never_the_value(
    api, checked_routes, caplog, case, field, problem
):
    answer = await api.request("GET", f"/api/v1/shapes?case={case}")
    assert (answer.status, answer.error_code) == (500, "response_mismatch")
    assert answer.body["error"].get("field") == field
    assert problem in answer.body["error"]["message"]
    [line] = mismatch_lines(caplog)
    assert f"shapes answered 200: {problem}" in line.getMessage()
    assert_no_secret(caplog, answer)


@pytest.mark.gen_test
async def test_an_undeclared_status_is_a_mismatch(api, checked_routes, caplog):
    accepted = await api.request("GET", "/api/v1/shapes?case=undeclared_status")
    assert (accepted.status, accepted.error_code) == (500, "response_mismatch")
    conflict = await api.request("GET", "/api/v1/shapes?case=undeclared_error")
    assert (conflict.status, conflict.error_code) == (500, "response_mismatch")
    messages = [line.getMessage() for line in mismatch_lines(caplog)]
    assert len(messages) == 2
    assert "shapes answered 202: a status the operation does not declare" in messages[0]
    assert "shapes answered 409: a status the operation does not declare" in messages[1]


@pytest.mark.gen_test
async def test_declared_errors_and_crashes_are_not_mismatches(api, checked_routes, caplog):
    busy = await api.request("GET", "/api/v1/shapes?case=declared_error")
    assert (busy.status, busy.error_code) == (503, "busy")
    crash = await api.request("GET", "/api/v1/shapes?case=crash")
    assert (crash.status, crash.error_code) == (500, "internal_error")
    assert mismatch_lines(caplog) == []


@pytest.mark.gen_test
async def test_the_body_limit_s_413_is_no_mismatch_on_any_route(api, checked_routes, caplog):
    """Every handler refuses a body over MAX_BODY_BYTES before its method runs, whatever
    the method: that 413 need not be declared (its body is still checked)."""
    for headers in ({}, {"Transfer-Encoding": "chunked"}):
        answer = await api.request(
            "GET", "/api/v1/shapes?case=right", raw="x" * 70_000, headers=headers
        )
        assert (answer.status, answer.error_code) == (413, "payload_too_large")
    assert mismatch_lines(caplog) == []


@pytest.mark.gen_test
async def test_the_keys_of_a_dictionary_are_data_and_never_named(api, checked_routes, caplog):
    answer = await api.request("GET", "/api/v1/presence-like")
    assert (answer.status, answer.error_code) == (500, "response_mismatch")
    assert answer.body["error"]["field"] == "presence.*.online"
    [line] = mismatch_lines(caplog)
    assert "PresenceLikeHandler.get answered 200: presence.*.online" in line.getMessage()
    assert_no_secret(caplog, answer)


@pytest.mark.gen_test
async def test_an_answer_declared_without_a_body_must_have_none(api, checked_routes, caplog):
    deleted = await api.request("DELETE", "/api/v1/nobody")
    assert deleted.status == 204
    chatty = await api.request("POST", "/api/v1/nobody")
    assert (chatty.status, chatty.error_code) == (500, "response_mismatch")
    [line] = mismatch_lines(caplog)
    assert "tooMuch answered 200: a body where the operation declares none" in line.getMessage()


@pytest.mark.gen_test
async def test_a_method_without_a_declaration_is_not_checked(api, checked_routes, caplog):
    answer = await api.request("GET", "/api/v1/undeclared")
    assert (answer.status, answer.body) == (200, {"anything": SECRET})
    assert mismatch_lines(caplog) == []


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"app_env": "development"}])
async def test_development_logs_the_mismatch_and_answers_unchanged(api, checked_routes, caplog):
    answer = await api.request("GET", "/api/v1/shapes?case=wrong_type")
    assert (answer.status, answer.body) == (200, {"name": "ok", "count": SECRET})
    [line] = mismatch_lines(caplog)
    assert "shapes answered 200: count fails the declared model" in line.getMessage()
    assert SECRET not in line.getMessage()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "app_env": "production",
            "smtp_url": "smtp://127.0.0.1:1",
            "public_url": "https://chat.example.com",
        },
        {"check_responses": False},
    ],
    ids=["production", "check_responses-off"],
)
async def test_production_and_check_responses_off_answer_unchecked(
    api, checked_routes, caplog, monkeypatch
):
    def never(*_args: Any) -> None:
        raise AssertionError("an answer was checked")

    monkeypatch.setattr(response_checks, "mismatch", never)
    monkeypatch.setattr(response_checks, "route_operations", never)
    wrong = await api.request("GET", "/api/v1/shapes?case=wrong_type")
    assert (wrong.status, wrong.body) == (200, {"name": "ok", "count": SECRET})
    undeclared = await api.request("GET", "/api/v1/shapes?case=undeclared_status")
    assert undeclared.status == 202
    assert mismatch_lines(caplog) == []


def test_the_setting_is_on_by_default_and_never_in_production():
    assert Settings(app_env="test").checks_responses
    assert Settings(app_env="development").checks_responses
    assert not Settings(app_env="test", check_responses=False).checks_responses
    production = Settings(
        app_env="production",
        mongodb_uri="mongodb://db:27017",
        jwt_secret="x" * 40,
        smtp_url="smtp://127.0.0.1:1",
        public_url="https://chat.example.com",
    )
    assert production.check_responses and not production.checks_responses


# --- the entities' derived models -----------------------------------------------------------


@pytest.mark.gen_test
async def test_every_entity_answer_passes_its_derived_model(api, checked_routes, caplog):
    author = await api.new_user()
    created = await api.request("POST", "/api/v1/db/message", {"text": "hi"}, token=author.token)
    assert created.status == 201, created.body
    message_id = created.body["message"]["_id"]
    path = f"/api/v1/db/message/{message_id}"
    listed = await api.request("GET", "/api/v1/db/message?limit=1", token=author.token)
    one = await api.request("GET", path, token=author.token)
    head = await api.request("HEAD", path, token=author.token)
    changed = await api.request("PUT", path, {"text": "hello"}, token=author.token)
    stale = await api.request(
        "PUT", path, {"text": "again"}, token=author.token, headers={"If-Match": '"0"'}
    )
    deleted = await api.request("DELETE", path, token=author.token)
    gone = await api.request("GET", path, token=author.token)
    statuses = [r.status for r in (listed, one, head, changed, stale, deleted, gone)]
    assert statuses == [200, 200, 200, 200, 412, 204, 404]
    assert mismatch_lines(caplog) == []


@pytest.mark.gen_test
async def test_an_entity_answer_off_its_model_is_caught(api, caplog, monkeypatch):
    shown = MESSAGE.to_public

    def leaky(doc: dict[str, Any]) -> dict[str, Any]:
        return {**shown(doc), "internal_note": SECRET}

    monkeypatch.setattr(MESSAGE, "to_public", leaky)
    author = await api.new_user()
    created = await api.request("POST", "/api/v1/db/message", {"text": "hi"}, token=author.token)
    assert (created.status, created.error_code) == (500, "response_mismatch")
    assert created.body["error"]["field"] == "message.internal_note"
    [line] = mismatch_lines(caplog)
    assert "createMessage answered 201: message.internal_note is not declared" in line.getMessage()
    assert_no_secret(caplog, created)


# --- the checks themselves ------------------------------------------------------------------


def test_errors_are_checked_against_the_error_schema():
    op = Operation("x", {200: Answer}, body=Answer, auth=True, errors={404: ""})
    good = b'{"error": {"code": "not_found", "message": "no such thing"}}'
    for status in (400, 401, 404, 413):
        assert response_checks.mismatch("x", op, status, good, "application/json") is None
    bad = b'{"error": {"code": "Not Found!", "message": "no such thing"}}'
    found = response_checks.mismatch("x", op, 404, bad, "application/json; charset=UTF-8")
    assert found is not None and found.field == "error.code"
    undeclared = response_checks.mismatch("x", op, 403, good, "application/json")
    assert undeclared is not None and undeclared.field is None


def test_a_json_model_needs_a_json_body():
    op = Operation("x", {200: envelope("answer", Answer)})
    found = response_checks.mismatch("x", op, 200, b"<html>", "text/html")
    assert found is not None and "not application/json" in found.problem
    found = response_checks.mismatch("x", op, 200, b"", "application/json")
    assert found is not None and found.problem == "the body is not JSON"
    nested = b'{"answer": {"name": "a", "count": true}}'
    found = response_checks.mismatch("x", op, 200, nested, "application/json")
    assert found is not None and found.field == "answer.count"


def test_answers_in_another_content_type_are_checked_for_their_status_only():
    op = Operation("x", {200: Response("text", content_type="text/plain", schema={})})
    assert response_checks.mismatch("x", op, 200, b"anything", "text/plain") is None
    assert response_checks.mismatch("x", op, 201, b"anything", "text/plain") is not None
