"""Property-based fuzzing of every REST operation (issue 6), against the running app.

Schemathesis generates requests from the served OpenAPI document, valid ones and
invalid ones, and sends them with a real JWT to the app pytest-tornado serves, on a
real database. Every answer must be documented: its status, content type,
headers and body; no answer may be a 5xx; data the document calls invalid must
be refused with a 4xx; an operation that declares Bearer auth must refuse a
request without it.

The caller is an administrator (the ``admin`` group), so the administration API is
fuzzed past its 403; the account-mail limits are off, so the mail routes are fuzzed
past their 429. The operations every run must cover are named (``REQUIRED_OPERATIONS``):
a route dropped from the document cannot be skipped silently.

Schemathesis is synchronous (requests), so it runs in a worker thread while the
test's event loop serves the app.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import jwt
import pytest
import requests
import schemathesis
from bson import ObjectId
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from transom_socketio import registry as keys
from transom_socketio.auth.tokens import TokenService
from transom_socketio.testing.clients import Api
from transom_socketio.testing.openapi import operations
from transom_socketio.web.openapi import OPENAPI_PATH

# Generated requests per operation and mode (valid / invalid data): the whole run
# stays well under a minute. FUZZ_MAX_EXAMPLES=1000 make test digs deeper.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
ID_EXAMPLES = 3  # valid requests per operation on each real document
# Operations the run must reach (by operationId), besides whatever else the document has.
REQUIRED_OPERATIONS = {
    "signup",
    "login",
    "logout",
    "me",
    "getSocketToken",
    "postSocketToken",
    "verifyEmail",
    "resendVerification",
    "forgotPassword",
    "resetPassword",
    "changePassword",
    "adminListUsers",
    "headAdminListUsers",
    "adminSetGroups",
    "adminLogoutUser",
    "devMail",
    "headDevMail",
    "verifyPage",
    "resetPage",
    "listMessage",
    "createMessage",
    "getMessage",
    "updateMessage",
    "deleteMessage",
    "presence",
    "health",
    "openapi",
}
# A status each of these operations must have answered at least once: its success
# (the admin API's on the real users the run names), or the refusal of a random token.
REACHED = {
    "adminListUsers": 200,
    "adminSetGroups": 200,
    "adminLogoutUser": 200,
    "forgotPassword": 202,
    "resendVerification": 202,
    "verifyEmail": 400,
    "resetPassword": 400,
    "changePassword": 403,
    "devMail": 200,
    "verifyPage": 200,
    "resetPage": 200,
}
# The fuzz run's settings: the account-mail limits off and the login throttle out of
# reach, so that generated requests reach the routes' work rather than their 429 (the
# random logins would otherwise spend the address's budget, which a password change
# shares, before any wrong current password is checked). test_account_limits.py and
# test_throttle.py test the limits.
FUZZ_SETTINGS = {
    "mail_requests_per_account": 0,
    "mail_requests_per_address": 0,
    "token_attempts_per_address": 0,
    "login_max_failures": 1_000_000,
}


@dataclass
class Tally:
    operations: int = 0
    operation_ids: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    # operationId -> the statuses it answered
    by_operation: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))


# Headers that frame the HTTP message rather than talk to the API. Tornado answers a
# malformed Host with a bare 400 before any handler sees the request.
HTTP_LEVEL_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def http_level_headers_sane(case: schemathesis.Case) -> bool:
    return not any(name.lower() in HTTP_LEVEL_HEADERS for name in case.headers or {})


def authenticate_with(schema: Any, fresh_jwt: Callable[[], str]) -> None:
    """Send a real JWT with every generated request that does not test its absence."""

    @schema.auth(refresh_interval=None)
    class FreshJwt:
        # A JWT of its own per request: fuzzing logout must not log out the rest.
        def get(self, case: schemathesis.Case, context: Any) -> str:
            return fresh_jwt()

        def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def run_cases(strategy: Any, examples: int, send: Callable[[schemathesis.Case], None]) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy.filter(http_level_headers_sane))
    def run(case: schemathesis.Case) -> None:
        send(case)

    run()


def fuzz(
    schema: Any,
    base_url: str,
    fresh_jwt: Callable[[], str],
    ids: dict[str, list[str]],
    tally: Tally,
) -> None:
    """Run every operation in both modes; raise on the first nonconforming answer.
    ``ids`` names real documents for each path parameter (``id``, ``user_id``)."""
    authenticate_with(schema, fresh_jwt)
    session = requests.Session()

    def send(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        tally.by_operation[case.operation.definition.raw.get("operationId", "")].add(
            response.status_code
        )
        if response.status_code >= 500:
            tally.server_errors.append(f"{case.method} {case.formatted_path}")
        case.validate_response(
            response, checks=CHECKS, transport_kwargs={"base_url": base_url, "session": session}
        )

    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations += 1
        tally.operation_ids.add(operation.definition.raw.get("operationId", ""))
        takes_input = bool(operation.body or operation.query or operation.path_parameters)
        # An operation without parameters or body has no invalid input to send.
        for mode in MODES if takes_input else MODES[:1]:
            run_cases(operation.as_strategy(generation_mode=mode), MAX_EXAMPLES, send)
        for name, real in ids.items():
            if "{" + name + "}" not in operation.path:
                continue
            # Random ids find nothing: also valid requests on real documents (the
            # caller's messages, another user's it may see, one it may not; users
            # other than the caller), for 200, 204, 403, 404.
            for oid in real:
                strategy = operation.as_strategy(path_parameters={name: oid})
                run_cases(strategy, ID_EXAMPLES, send)


async def seed(api: Api, db: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Users and messages for the fuzzer to find: returns the caller, an administrator,
    and the ids of messages and of users other than the caller."""
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    await db["users"].update_one({"_id": ObjectId(ada.id)}, {"$set": {"groups": ["admin"]}})
    ids = []
    for author, body in (
        (ada, {"text": "ada's broadcast"}),
        (ada, {"text": "ada to bob", "to": bob.id}),
        (bob, {"text": "bob to ada", "to": ada.id}),
        (bob, {"text": "bob to carol", "to": carol.id}),
    ):
        created = await api.request("POST", "/api/v1/db/message", body, token=author.token)
        assert created.status == 201
        ids.append(created.body["message"]["_id"])
    caller = {"_id": ObjectId(ada.id), "username": ada.username, "groups": ["admin"]}
    # Never the caller's own id as a user_id: its sessions would end (an administrator's
    # logout of it), or its admin group go, and with them the rest of the run.
    return caller, {"id": ids, "user_id": [bob.id, carol.id]}


@pytest.mark.parametrize("settings_overrides", [FUZZ_SETTINGS])
@pytest.mark.gen_test(timeout=60 + 8 * MAX_EXAMPLES)
async def test_every_operation_answers_as_documented_under_fuzzing(
    api, db, registry, base_url, report
):
    caller, ids = await seed(api, db)
    document = (await api.request("GET", OPENAPI_PATH)).body
    documented_ids = {operation.get("operationId") for _, _, operation in operations(document)}
    assert documented_ids >= REQUIRED_OPERATIONS, REQUIRED_OPERATIONS - documented_ids
    schema = schemathesis.openapi.from_dict(document)
    tokens: TokenService = registry[keys.TOKENS]

    tally = Tally()
    started = time.perf_counter()
    try:
        await asyncio.to_thread(
            fuzz, schema, base_url, lambda: tokens.issue(caller).token, ids, tally
        )
    finally:
        report(
            f"schemathesis: {tally.operations} operations, {tally.requests} requests tried, "
            f"{len(tally.server_errors)} 5xx seen, in {time.perf_counter() - started:.1f}s; "
            f"statuses {dict(sorted(tally.statuses.items()))}"
        )
    assert tally.operations == sum(
        1 for item in document["paths"].values() for method in item if method != "parameters"
    )
    assert tally.operation_ids == documented_ids
    assert tally.server_errors == []
    assert tally.requests >= tally.operations
    # The fuzzer reached the app's answers, not only its refusals.
    assert {200, 201, 202, 204, 400, 401, 403, 404} <= set(tally.statuses)
    # The new routes were fuzzed past their refusals, to their work.
    for operation_id, status in REACHED.items():
        assert status in tally.by_operation[operation_id], (
            operation_id,
            tally.by_operation[operation_id],
        )
    # The server is still healthy afterwards.
    assert (await api.request("GET", "/health")).status == 200


# Issue 14: hostile values the OpenAPI-driven fuzzer rarely makes. Unicode digits
# ("²".isdigit() is true, int("²") fails), NUL and other control characters, in query
# parameters, path segments and static file names; and JWTs signed with the real
# secret whose claims are of the wrong type or outside their types' ranges.
HOSTILE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(categories=["Nd", "No", "Nl"]),  # digits of every script
        st.characters(categories=["Cc", "Cf", "Zs"]),  # NUL, controls, bidi marks, spaces
        st.sampled_from("0123456789abcdef%/.\\"),
    ),
    min_size=1,
    max_size=24,
)
CLAIM_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([253_402_300_800, 10**20, -1, 0, 2**63]),
    HOSTILE_TEXT,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


HOSTILE_PLACES = 14


def hostile_requests(base_url: str, jwt_token: str, examples: int) -> None:
    """Send hostile query values, path segments and file names, with an administrator's
    JWT; raise on a 5xx."""
    session = requests.Session()
    auth = {"Authorization": f"Bearer {jwt_token}"}

    @hypothesis.settings(max_examples=examples, deadline=None, database=None)
    @hypothesis.given(value=HOSTILE_TEXT)
    def run(value: str) -> None:
        quoted = urllib.parse.quote(value, safe="")
        requests_made = [
            ("GET", f"/api/v1/db/message?limit={quoted}", None),
            ("GET", f"/api/v1/db/message?before={quoted}", None),
            ("GET", f"/api/v1/db/message/{quoted}", None),
            ("GET", f"/api/v1/presence?users={quoted}", None),
            ("GET", f"/static/app.js{quoted}.png", None),
            ("GET", f"/static/{quoted}", None),
            ("GET", f"/{quoted}", None),
            ("GET", f"/api/v1/admin/users?limit={quoted}", None),
            ("GET", f"/api/v1/admin/users?before={quoted}", None),
            ("PUT", f"/api/v1/admin/users/{quoted}/groups", {"groups": [value]}),
            ("POST", f"/api/v1/admin/users/{quoted}/logout", None),
            ("GET", f"/dev/mail?to={quoted}", None),
            ("POST", "/api/v1/user/verify", {"token": value}),
            ("POST", "/api/v1/user/forgot", {"email": value}),
        ]
        assert len(requests_made) == HOSTILE_PLACES
        for method, path, body in requests_made:
            response = session.request(method, base_url + path, headers=auth, json=body, timeout=30)
            assert response.status_code < 500, f"{response.status_code} {method} {path} {body!r}"
            if response.status_code >= 400:
                assert set(response.json()["error"]) >= {"code", "message"}, path

    run()


def hostile_claims(base_url: str, secret: str, user_id: str, examples: int) -> None:
    """Send JWTs signed with the real secret and hostile claims; raise on a 5xx."""
    session = requests.Session()
    now = int(time.time())

    @hypothesis.settings(max_examples=examples, deadline=None, database=None)
    @hypothesis.given(
        claim=st.sampled_from(["sub", "exp", "iat", "nbf", "jti", "groups", "username"]),
        value=CLAIM_VALUE,
    )
    def run(claim: str, value: Any) -> None:
        claims = {"sub": user_id, "iat": now, "exp": now + 600, "jti": "fuzz", claim: value}
        token = jwt.encode(claims, secret, algorithm="HS256")
        response = session.get(
            base_url + "/api/v1/user/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert response.status_code in (200, 401), (claim, value, response.status_code)
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "invalid_token"

    run()


@pytest.mark.parametrize("settings_overrides", [FUZZ_SETTINGS])
@pytest.mark.gen_test(timeout=60 + 6 * MAX_EXAMPLES)
async def test_hostile_query_values_path_segments_and_file_names_never_answer_5xx(
    api, db, base_url, report
):
    user = await api.new_user()
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": ["admin"]}})
    admin = (await api.login(user.username)).body["token"]
    await asyncio.to_thread(hostile_requests, base_url, admin, MAX_EXAMPLES * 3)
    report(f"hostile text: {MAX_EXAMPLES * 3} values x {HOSTILE_PLACES} places, no 5xx")


@pytest.mark.gen_test(timeout=60 + 6 * MAX_EXAMPLES)
async def test_jwts_with_claims_out_of_type_or_range_answer_401_never_5xx(
    api, base_url, settings, report
):
    user = await api.new_user()
    await asyncio.to_thread(
        hostile_claims, base_url, settings.jwt_secret, user.id, MAX_EXAMPLES * 6
    )
    report(f"hostile claims: {MAX_EXAMPLES * 6} JWTs, no 5xx")
