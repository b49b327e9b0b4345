"""Who may delete a message (models/message.py): its author, or a member of the group
``moderators``, of the messages that member may read."""

from __future__ import annotations

import dataclasses

import pytest
from bson import ObjectId

MESSAGES = "/api/v1/db/message"


async def post(api, user, body):
    sent = await api.request("POST", MESSAGES, body, token=user.token)
    assert sent.status == 201, sent.body
    return sent.body["message"]


async def in_groups(api, db, user, *groups):
    """``user`` in ``groups``, logged in again: the JWT carries the user's groups."""
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}})
    logged_in = await api.login(user.username)
    assert logged_in.status == 200, logged_in.body
    return dataclasses.replace(user, token=logged_in.body["token"])


async def listed(api, user):
    page = await api.request("GET", MESSAGES, token=user.token)
    assert page.status == 200, page.body
    return {message["_id"] for message in page.body["messages"]}


@pytest.mark.gen_test(timeout=30)
async def test_a_moderator_deletes_a_broadcast_of_another_user(api, db):
    ada, eve = await api.new_user("ada"), await api.new_user("eve")
    mod = await in_groups(api, db, await api.new_user("mod"), "moderators")
    broadcast = await post(api, ada, {"text": "spam"})
    url = f"{MESSAGES}/{broadcast['_id']}"

    # A user who is no moderator sees it but may not delete it.
    refused = await api.request("DELETE", url, token=eve.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    assert broadcast["_id"] in await listed(api, eve)

    # A moderator may, and it is gone for everyone.
    assert (await api.request("DELETE", url, token=mod.token)).status == 204
    for user in (ada, eve, mod):
        assert broadcast["_id"] not in await listed(api, user)
        assert (await api.request("GET", url, token=user.token)).status == 404

    # A moderator may not change another user's message (update stays the author's).
    other = await post(api, ada, {"text": "mine"})
    changed = await api.request(
        "PUT", f"{MESSAGES}/{other['_id']}", {"text": "moderated"}, token=mod.token
    )
    assert (changed.status, changed.error_code) == (403, "forbidden")


@pytest.mark.gen_test(timeout=30)
async def test_the_author_still_deletes_and_a_moderator_only_what_they_see(api, db):
    ada, eve = await api.new_user("ada"), await api.new_user("eve")
    mod = await in_groups(api, db, await api.new_user("mod"), "moderators")

    own = await post(api, ada, {"text": "oops"})
    assert (await api.request("DELETE", f"{MESSAGES}/{own['_id']}", token=ada.token)).status == 204
    assert own["_id"] not in await listed(api, eve)

    # A direct message between two others: the moderator cannot see it, nor delete it.
    direct = await post(api, ada, {"text": "just for eve", "to": eve.id})
    url = f"{MESSAGES}/{direct['_id']}"
    refused = await api.request("DELETE", url, token=mod.token)
    assert (refused.status, refused.error_code) == (404, "not_found")
    assert direct["_id"] in await listed(api, eve)

    # Out of the group (a new login), the same user may no longer delete.
    broadcast = await post(api, eve, {"text": "hello all"})
    former = await in_groups(api, db, mod)
    refused = await api.request("DELETE", f"{MESSAGES}/{broadcast['_id']}", token=former.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    assert broadcast["_id"] in await listed(api, ada)
