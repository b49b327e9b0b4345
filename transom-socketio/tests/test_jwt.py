"""JWT verification (issue 3): HS256 only, required claims, expiry, forgery, key rotation."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
import pytest

from transom_socketio.testing.clients import Api, User

ME = "/api/v1/user/me"
PREVIOUS_SECRET = "previous-secret-" + "p" * 40
UNKNOWN_SECRET = "unknown-secret-" + "u" * 40
ROTATION = [{"jwt_previous_secret": PREVIOUS_SECRET}]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims_for(user: User, **changes: Any) -> dict[str, Any]:
    """Valid claims for ``user``; a change to None removes that claim."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": user.id,
        "username": user.username,
        "groups": [],
        "iat": now,
        "exp": now + 600,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def forge(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def unsigned(claims: dict[str, Any], alg: str = "none", signature: str = "") -> str:
    return f"{b64_json({'alg': alg, 'typ': 'JWT'})}.{b64_json(claims)}.{signature}"


async def assert_refused(api: Api, token: str) -> None:
    response = await api.request("GET", ME, token=token)
    assert response.status == 401, response.body
    assert response.error_code == "invalid_token"
    assert set(response.body["error"]) >= {"code", "message"}


@pytest.mark.gen_test
async def test_a_token_signed_with_the_secret_and_all_claims_is_accepted(api, settings):
    user = await api.new_user()
    token = forge(claims_for(user), settings.jwt_secret)
    response = await api.request("GET", ME, token=token)
    assert response.status == 200
    assert response.body["me"]["_id"] == user.id


@pytest.mark.gen_test
async def test_a_tampered_payload_is_refused(api):
    victim = await api.new_user()
    attacker = await api.new_user()
    header, payload, signature = attacker.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = victim.id
    await assert_refused(api, f"{header}.{b64_json(claims)}.{signature}")


@pytest.mark.gen_test
async def test_a_tampered_signature_is_refused(api):
    user = await api.new_user()
    header, payload, signature = user.token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    await assert_refused(api, f"{header}.{payload}.{flipped}")
    await assert_refused(api, f"{header}.{payload}.")
    await assert_refused(api, f"{header}.{payload}")


@pytest.mark.gen_test
async def test_a_token_signed_with_another_secret_is_refused(api):
    user = await api.new_user()
    await assert_refused(api, forge(claims_for(user), UNKNOWN_SECRET))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
@pytest.mark.gen_test
async def test_alg_none_is_refused(api, settings, alg):
    user = await api.new_user()
    claims = claims_for(user)
    await assert_refused(api, unsigned(claims, alg))
    # ...also with a signature attached that would be valid for HS256.
    real_signature = forge(claims, settings.jwt_secret).split(".")[2]
    await assert_refused(api, unsigned(claims, alg, real_signature))


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
@pytest.mark.filterwarnings("ignore:The HMAC key")  # PyJWT wants 64-byte keys for HS512
@pytest.mark.gen_test
async def test_other_hmac_algorithms_are_refused_even_with_the_right_secret(
    api, settings, algorithm
):
    user = await api.new_user()
    await assert_refused(api, forge(claims_for(user), settings.jwt_secret, algorithm))


def hand_signed(claims: dict[str, Any], secret: str, header_alg: str) -> str:
    """An HMAC-SHA256 signed token whose header claims ``header_alg``."""
    signing_input = f"{b64_json({'alg': header_alg, 'typ': 'JWT'})}.{b64_json(claims)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


@pytest.mark.gen_test
async def test_an_hs256_signature_under_another_alg_header_is_refused(api, settings):
    user = await api.new_user()
    claims = claims_for(user)
    honest = await api.request("GET", ME, token=hand_signed(claims, settings.jwt_secret, "HS256"))
    assert honest.status == 200
    for header_alg in ("RS256", "ES256", "PS256", "EdDSA", "hs256"):
        await assert_refused(api, hand_signed(claims, settings.jwt_secret, header_alg))


@pytest.mark.parametrize("missing", ["exp", "jti", "sub", "iat"])
@pytest.mark.gen_test
async def test_a_token_missing_a_required_claim_is_refused(api, settings, missing):
    user = await api.new_user()
    await assert_refused(api, forge(claims_for(user, **{missing: None}), settings.jwt_secret))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "tomorrow"},
        {"sub": 12345},
        {"jti": ["a", "b"]},
        {"groups": "admin"},
        {"username": {"$ne": None}},
    ],
)
@pytest.mark.gen_test
async def test_a_token_with_badly_typed_claims_is_refused(api, settings, changes):
    user = await api.new_user()
    await assert_refused(api, forge(claims_for(user, **changes), settings.jwt_secret))


@pytest.mark.gen_test
async def test_an_expired_token_is_refused(api, settings):
    user = await api.new_user()
    past = int(dt.datetime.now(dt.UTC).timestamp()) - 10
    token = forge(claims_for(user, iat=past - 3600, exp=past), settings.jwt_secret)
    response = await api.request("GET", ME, token=token)
    assert response.status == 401
    assert response.error_code == "invalid_token"
    assert "expired" in response.body["error"]["message"]


@pytest.mark.parametrize("token", ["abc", "a.b.c", "....", "é.é.é", "x" * 5000])
@pytest.mark.gen_test
async def test_garbage_tokens_are_refused(api, token):
    await assert_refused(api, token)


@pytest.mark.parametrize("settings_overrides", ROTATION)
@pytest.mark.gen_test
async def test_during_rotation_a_token_signed_with_the_previous_secret_is_accepted(api, settings):
    user = await api.new_user()
    old_token = forge(claims_for(user), PREVIOUS_SECRET)
    response = await api.request("GET", ME, token=old_token)
    assert response.status == 200
    assert response.body["me"]["_id"] == user.id

    await assert_refused(api, forge(claims_for(user), UNKNOWN_SECRET))
    past = int(dt.datetime.now(dt.UTC).timestamp()) - 10
    await assert_refused(api, forge(claims_for(user, exp=past), PREVIOUS_SECRET))

    # New tokens are signed with the current secret only.
    new_token = (await api.login(user.username)).body["token"]
    assert jwt.decode(new_token, settings.jwt_secret, algorithms=["HS256"])["sub"] == user.id
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new_token, PREVIOUS_SECRET, algorithms=["HS256"])


@pytest.mark.parametrize("settings_overrides", ROTATION)
@pytest.mark.gen_test
async def test_a_revoked_token_signed_with_the_previous_secret_is_refused(api, settings_overrides):
    user = await api.new_user()
    old_token = forge(claims_for(user), PREVIOUS_SECRET)
    assert (await api.request("POST", "/api/v1/user/logout", token=old_token)).status == 200
    await assert_refused(api, old_token)


@pytest.mark.gen_test
async def test_without_rotation_a_token_signed_with_the_previous_secret_is_refused(api):
    user = await api.new_user()
    await assert_refused(api, forge(claims_for(user), PREVIOUS_SECRET))


# Issue 14: a JWT signed with the real secret whose claims are outside their ranges or
# of the wrong kind answers 401 invalid_token, never 500.
@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 253_402_300_800},  # one second into year 10000
        {"exp": 10**15},
        {"exp": 2**63},
        {"exp": float("inf")},
        {"exp": True},
        {"iat": float("inf")},
        {"iat": 10**400},
        {"iat": float("nan")},
        {"nbf": float("inf")},
        {"sub": "not-an-object-id"},
        {"sub": "z" * 24},
        {"sub": "0" * 25},
        {"sub": ""},
        {"jti": ""},
        {"jti": "j" * 1000},
        {"groups": [{"$ne": 1}]},
        {"groups": ["g" * 10_000]},
        {"username": {"$gt": ""}},
    ],
    ids=lambda changes: "-".join(f"{k}={str(v)[:12]}" for k, v in changes.items()),
)
@pytest.mark.gen_test
async def test_claims_out_of_range_or_of_the_wrong_kind_answer_401(api, settings, changes):
    user = await api.new_user()
    claims = claims_for(user, **changes)
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    await assert_refused(api, token)
    socket = await api.request("POST", "/api/v1/user/sockettoken", token=token)
    assert socket.status == 401


# A verified token is kept so that the next request with it skips PyJWT
# (auth/tokens.py, VERIFIED_KEPT): what was refused must stay refused, and what was
# accepted must still expire and still be revoked.


@pytest.mark.gen_test(timeout=30)
async def test_a_token_accepted_and_kept_is_refused_once_it_expires(api, settings):
    user = await api.new_user()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = forge(claims_for(user, iat=now, exp=now + 2), settings.jwt_secret)
    assert (await api.request("GET", ME, token=token)).status == 200
    assert (await api.request("GET", ME, token=token)).status == 200  # kept
    await asyncio.sleep(now + 2 - dt.datetime.now(dt.UTC).timestamp() + 0.05)
    response = await api.request("GET", ME, token=token)
    assert response.status == 401
    assert "expired" in response.body["error"]["message"]


@pytest.mark.gen_test
async def test_a_token_accepted_and_kept_is_refused_once_revoked(api):
    user = await api.new_user()
    assert (await api.request("GET", ME, token=user.token)).status == 200
    assert (await api.request("POST", "/api/v1/user/logout", token=user.token)).status == 200
    await assert_refused(api, user.token)


@pytest.mark.gen_test
async def test_a_refused_token_is_refused_again_after_its_valid_twin_was_kept(api):
    """The tampered twins of a kept token share all but a few characters with it."""
    user = await api.new_user()
    assert (await api.request("GET", ME, token=user.token)).status == 200
    header, payload, signature = user.token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for _ in range(2):
        await assert_refused(api, f"{header}.{payload}.{flipped}")
        await assert_refused(api, f"{header}.{payload}")
        await assert_refused(api, f"{user.token}A")


@pytest.mark.gen_test
async def test_a_token_kept_at_login_is_what_decoding_it_gives(api, app):
    # The login keeps the JWT it issues, so its first use skips PyJWT: what it keeps
    # must be what verifying the token gives (every claim, the expiry to the second).
    user = await api.new_user()
    tokens = app.settings["services"].tokens
    kept = tokens.decode(user.token)
    assert kept._revocation_checked_at is not None  # kept by the login, not decoded here
    verified = tokens._verify(user.token)
    assert (kept, kept.expires_at, kept.session_epoch) == (
        verified,
        verified.expires_at,
        verified.session_epoch,
    )
