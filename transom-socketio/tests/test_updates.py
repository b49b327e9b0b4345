"""Updates are atomic and conditional: ETag, If-Match, 412, no lost update.

The races are real: concurrent HTTP requests to the running app, over its database.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import pytest
from bson import ObjectId
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from pydantic import create_model

from transom_socketio import registry as keys
from transom_socketio.models.base import Entity
from transom_socketio.shapes import Shape, Text
from transom_socketio.web.entities import entity_routes

MESSAGES = "/api/v1/db/message"
NOTES = "/api/v1/db/note"
NOTE_FIELDS = tuple(f"part{number}" for number in range(6))


class Note(Entity):
    """An entity with several fields that may change one at a time."""

    name = "note"
    Fields = create_model(
        "NoteFields",
        __base__=Shape,
        **{name: (Annotated[str, Text(max_length=100)] | None, None) for name in NOTE_FIELDS},
    )


@pytest.fixture
def app(app):
    """The application, also serving ``note`` the way it serves every entity."""
    note_routes = entity_routes((*ENTITIES, Note()), ACTIONS_PACKAGE)[2 * len(ENTITIES) :]
    app.add_handlers(r".*", note_routes)
    return app


async def new_message(api, user, text="first"):
    created = await api.request("POST", MESSAGES, {"text": text}, token=user.token)
    assert created.status == 201
    return created


async def put(api, user, path, body, if_match=None):
    headers = {"If-Match": if_match} if if_match is not None else None
    return await api.request("PUT", path, body, token=user.token, headers=headers)


@pytest.mark.gen_test(timeout=30)
async def test_get_answers_the_etag_each_update_moves_on(api):
    ada = await api.new_user("ada")
    created = await new_message(api, ada)
    path = f"{MESSAGES}/{created.body['message']['_id']}"
    assert created.headers["ETag"] == '"1"'
    assert (await api.request("GET", path, token=ada.token)).headers["ETag"] == '"1"'

    updated = await put(api, ada, path, {"text": "second"}, if_match='"1"')
    assert updated.status == 200
    assert updated.headers["ETag"] == '"2"'
    read = await api.request("GET", path, token=ada.token)
    assert read.headers["ETag"] == updated.headers["ETag"]
    assert read.body["message"]["text"] == "second"
    # The version is a header, not a new key of the public document.
    assert set(read.body["message"]) == {"_id", "text", "author", "to", "channel", "created_at"}


@pytest.mark.gen_test(timeout=30)
async def test_a_stale_if_match_answers_412_and_changes_nothing(api):
    ada = await api.new_user("ada")
    path = f"{MESSAGES}/{(await new_message(api, ada)).body['message']['_id']}"
    assert (await put(api, ada, path, {"text": "second"})).headers["ETag"] == '"2"'

    for stale in ('"1"', 'W/"2"', '"one"', "2", '"3", "1"'):
        refused = await put(api, ada, path, {"text": "lost"}, if_match=stale)
        assert refused.status == 412, stale
        assert refused.error_code == "precondition_failed"
    read = await api.request("GET", path, token=ada.token)
    assert read.body["message"]["text"] == "second"
    assert read.headers["ETag"] == '"2"'
    # Any of several tags, or *, matches as HTTP says.
    assert (await put(api, ada, path, {"text": "third"}, if_match='"7", "2"')).status == 200
    assert (await put(api, ada, path, {"text": "fourth"}, if_match="*")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_only_one_of_two_updates_from_the_same_version_lands(api):
    ada = await api.new_user("ada")
    path = f"{MESSAGES}/{(await new_message(api, ada)).body['message']['_id']}"
    texts = [f"edit {number}" for number in range(2)]
    answers = await asyncio.gather(
        *(put(api, ada, path, {"text": text}, if_match='"1"') for text in texts)
    )
    assert sorted(answer.status for answer in answers) == [200, 412]
    [winner] = [answer for answer in answers if answer.status == 200]
    [loser] = [answer for answer in answers if answer.status == 412]
    assert loser.error_code == "precondition_failed"
    read = await api.request("GET", path, token=ada.token)
    assert read.body["message"]["text"] == winner.body["message"]["text"]
    assert read.headers["ETag"] == winner.headers["ETag"] == '"2"'


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_updates_of_different_fields_all_land(api):
    ada = await api.new_user("ada")
    created = await api.request(
        "POST", NOTES, {name: "old" for name in NOTE_FIELDS}, token=ada.token
    )
    assert created.status == 201
    path = f"{NOTES}/{created.body['note']['_id']}"
    answers = await asyncio.gather(
        *(put(api, ada, path, {name: f"new {name}"}) for name in NOTE_FIELDS)
    )
    assert [answer.status for answer in answers] == [200] * len(NOTE_FIELDS)
    read = await api.request("GET", path, token=ada.token)
    assert {name: read.body["note"][name] for name in NOTE_FIELDS} == {
        name: f"new {name}" for name in NOTE_FIELDS
    }
    assert read.headers["ETag"] == f'"{1 + len(NOTE_FIELDS)}"'


@pytest.mark.gen_test(timeout=30)
async def test_a_document_without_a_version_is_version_0(api, app):
    ada = await api.new_user("ada")
    message_id = (await new_message(api, ada)).body["message"]["_id"]
    path = f"{MESSAGES}/{message_id}"
    database = app.settings["registry"][keys.DATABASE]
    legacy = {"$unset": {"version": ""}}  # as stored before documents had versions
    await database["messages"].update_one({"_id": ObjectId(message_id)}, legacy)
    assert (await api.request("GET", path, token=ada.token)).headers["ETag"] == '"0"'
    assert (await put(api, ada, path, {"text": "x"}, if_match='"1"')).status == 412
    updated = await put(api, ada, path, {"text": "y"}, if_match='"0"')
    assert updated.status == 200
    assert updated.headers["ETag"] == '"1"'


@pytest.mark.gen_test(timeout=30)
async def test_only_the_owner_updates_even_with_the_current_etag(api):
    ada = await api.new_user("ada")
    bob = await api.new_user("bob")
    created = await new_message(api, ada)  # a broadcast: bob can read it
    path = f"{MESSAGES}/{created.body['message']['_id']}"
    assert (await api.request("GET", path, token=bob.token)).headers["ETag"] == '"1"'
    refused = await put(api, bob, path, {"text": "mine now"}, if_match='"1"')
    assert refused.status == 403
    read = await api.request("GET", path, token=ada.token)
    assert (read.body["message"]["text"], read.headers["ETag"]) == ("first", '"1"')


# Issue 20: DELETE ignored If-Match; it is honoured like PUT's.
@pytest.mark.gen_test(timeout=30)
async def test_a_delete_with_a_stale_if_match_answers_412_and_deletes_nothing(api, db):
    ada = await api.new_user("ada")
    path = f"{MESSAGES}/{(await new_message(api, ada)).body['message']['_id']}"
    assert (await put(api, ada, path, {"text": "second"})).headers["ETag"] == '"2"'

    for stale in ('"1"', 'W/"2"', '"one"', "2"):
        refused = await api.request("DELETE", path, token=ada.token, headers={"If-Match": stale})
        assert refused.status == 412, stale
        assert refused.error_code == "precondition_failed"
    read = await api.request("GET", path, token=ada.token)
    assert (read.status, read.body["message"]["text"]) == (200, "second")

    deleted = await api.request("DELETE", path, token=ada.token, headers={"If-Match": '"2"'})
    assert deleted.status == 204
    assert (await api.request("GET", path, token=ada.token)).status == 404
    assert await db["messages"].count_documents({}) == 0


@pytest.mark.gen_test(timeout=30)
async def test_of_an_update_and_a_delete_from_the_same_version_only_one_lands(api, db):
    ada = await api.new_user("ada")
    path = f"{MESSAGES}/{(await new_message(api, ada)).body['message']['_id']}"
    update, delete = await asyncio.gather(
        put(api, ada, path, {"text": "edited"}, if_match='"1"'),
        api.request("DELETE", path, token=ada.token, headers={"If-Match": '"1"'}),
    )
    assert sorted([update.status, delete.status]) in ([200, 412], [204, 404], [204, 412])
    remaining = await db["messages"].count_documents({})
    if update.status == 200:  # the update won: the delete named a version now gone
        assert (delete.status, remaining) == (412, 1)
    else:
        assert (delete.status, remaining) == (204, 0)
