"""POST /api/v1/user/signup: the stored user, uniqueness, derived usernames, 400s."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from bson import ObjectId

from transom_socketio.auth.shapes import Signup
from transom_socketio.testing.clients import PASSWORD

SIGNUP = "/api/v1/user/signup"
PUBLIC_FIELDS = {"_id", "username", "email", "display_name", "groups", "verified", "created_at"}


@pytest.mark.gen_test
async def test_signup_answers_201_with_the_public_user_only(api, db):
    created = await api.signup(
        email="Grace@Example.com", password=PASSWORD, username="Grace", display_name="G. Hopper"
    )
    assert created.status == 201
    user = created.body["user"]
    assert set(user) == PUBLIC_FIELDS
    assert user["email"] == "Grace@Example.com"
    assert user["username"] == "Grace"
    assert user["display_name"] == "G. Hopper"
    assert user["groups"] == []
    created_at = dt.datetime.fromisoformat(user["created_at"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.UTC) - created_at) < dt.timedelta(minutes=1)

    stored = await db["users"].find_one({"_id": ObjectId(user["_id"])})
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)


@pytest.mark.gen_test
async def test_addresses_of_every_usual_shape_sign_up(api):
    for email in ("o'brien+news@example.co.uk", "josé@exämple.com", "a_b-c@mail.example.org"):
        created = await api.signup(email=email, password=PASSWORD)
        assert created.status == 201, (email, created.body)


@pytest.mark.gen_test
async def test_display_name_defaults_to_the_username(api):
    created = await api.signup(email="lin@example.com", password=PASSWORD, username="lin")
    assert created.status == 201
    assert created.body["user"]["display_name"] == "lin"


@pytest.mark.gen_test
async def test_username_is_derived_from_the_email_when_absent(api):
    first = await api.signup(email="grace.hopper@example.com", password=PASSWORD)
    assert first.status == 201
    assert first.body["user"]["username"] == "grace.hopper"

    # The same local part at another domain: still a unique, valid username.
    second = await api.signup(email="Grace.Hopper@navy.example", password=PASSWORD)
    assert second.status == 201
    derived = second.body["user"]["username"]
    assert derived.lower() != "grace.hopper"
    assert derived.lower().startswith("grace.hopper")

    await api.verify("Grace.Hopper@navy.example")
    assert (await api.login(derived)).status == 200


@pytest.mark.gen_test
async def test_a_short_email_local_part_still_gives_a_valid_username(api):
    created = await api.signup(email="x@example.com", password=PASSWORD)
    assert created.status == 201
    username = created.body["user"]["username"]
    assert len(username) >= 3
    await api.verify("x@example.com")
    assert (await api.login(username)).status == 200


@pytest.mark.gen_test
async def test_email_is_unique_without_regard_to_case(api):
    assert (await api.signup(email="ada@example.com", password=PASSWORD)).status == 201
    again = await api.signup(email="ADA@Example.COM", password=PASSWORD, username="other")
    assert again.status == 409
    assert again.error_code == "email_taken"


@pytest.mark.gen_test
async def test_username_is_unique_without_regard_to_case(api):
    first = await api.signup(email="one@example.com", password=PASSWORD, username="Ada")
    assert first.status == 201
    again = await api.signup(email="two@example.com", password=PASSWORD, username="aDA")
    assert again.status == 409
    assert again.error_code == "username_taken"


@pytest.mark.gen_test
async def test_of_simultaneous_signups_with_one_email_exactly_one_succeeds(api, db):
    responses = await asyncio.gather(
        *(
            api.signup(email="race@example.com", password=PASSWORD, username=f"racer{i}")
            for i in range(5)
        )
    )
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]
    assert {r.error_code for r in responses if r.status == 409} == {"email_taken"}
    assert await db["users"].count_documents({"email_lower": "race@example.com"}) == 1


@pytest.mark.gen_test
async def test_a_password_of_exactly_8_characters_is_accepted_and_kept_verbatim(api):
    padded = " pass 8 "
    created = await api.signup(email="pad@example.com", password=padded, username="pad")
    assert created.status == 201
    await api.verify("pad@example.com")
    assert (await api.login("pad", padded)).status == 200
    assert (await api.login("pad", padded.strip())).status == 401


VALID = {"email": "a@example.com", "password": PASSWORD}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"password": PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@b", "password": PASSWORD}, "email"),
        ({"email": "", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "seven77"}, "password"),
        ({"email": "a@example.com", "password": "x" * 1025}, "password"),
        ({**VALID, "username": "ab"}, "username"),
        ({**VALID, "username": "-dash"}, "username"),
        ({**VALID, "username": "with space"}, "username"),
        ({**VALID, "username": "u" * 33}, "username"),
        ({**VALID, "display_name": "d" * 101}, "display_name"),
        # One line: a name with breaks would write paragraphs where it is shown.
        ({**VALID, "display_name": "customer,\n\nUnlock: https://evil.example"}, "display_name"),
        ({**VALID, "display_name": "a\rb"}, "display_name"),
        ({**VALID, "display_name": "a\u2028b"}, "display_name"),
        ({**VALID, "display_name": "a\u2029b"}, "display_name"),
        # Its own writing direction: an override makes text read otherwise than it is.
        ({**VALID, "display_name": "admin\u202egnp.exe"}, "display_name"),
        ({**VALID, "display_name": "a\u2067b\u2069"}, "display_name"),
        # One mailbox: what RFC 5322 allows besides a dot-atom would make the mail's To:
        # header name other recipients (or none) than the account's address.
        ({"email": "postmaster,victim@example.com", "password": PASSWORD}, "email"),
        ({"email": "a:victim@example.com;", "password": PASSWORD}, "email"),
        ({"email": "victim@example.com(1)", "password": PASSWORD}, "email"),
        ({"email": '"quoted"@example.com', "password": PASSWORD}, "email"),
        ({"email": "a<victim@example.com>", "password": PASSWORD}, "email"),
        ({"email": "a..b@example.com", "password": PASSWORD}, "email"),
        ({"email": "a\u00a0b@example.com", "password": PASSWORD}, "email"),
        ({**VALID, "admin": True}, "admin"),
        ({**VALID, "groups": ["admin"]}, "groups"),
    ],
)
@pytest.mark.gen_test
async def test_invalid_fields_answer_400_naming_the_field(api, db, fields, field):
    response = await api.signup(**fields)
    assert response.status == 400
    assert response.error_code == "validation_error"
    assert response.body["error"]["field"] == field
    if field in Signup.model_fields:
        assert field in response.body["error"]["message"]
    else:  # an unknown field is named once, in error.field (issue 20)
        assert response.body["error"]["message"] == "unknown field (named in error.field)"
    assert await db["users"].count_documents({}) == 0
