"""The access policy of an entity (issue 21): who may read, change and delete its
documents, enforced in the database query itself.

``task`` reads by its owner, its assignee, or anyone when it is public; only its
assignee changes it and only its owner deletes it. Each rule is checked both ways
over HTTP, in lists, in the OpenAPI document, and under concurrent requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import types
from typing import Annotated, Any

import pytest
from bson import ObjectId
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from openapi_spec_validator import validate

from transom_socketio.auth.tokens import Principal
from transom_socketio.models import store
from transom_socketio.models.access import (
    NOBODY,
    OWNER,
    SIGNED_IN,
    Custom,
    Rule,
    user_field,
)
from transom_socketio.models.actions import ActionContext, Actions
from transom_socketio.models.base import Entity
from transom_socketio.models.errors import ModelError
from transom_socketio.shapes import Ref, Shape, Text
from transom_socketio.web.entities import entity_routes
from transom_socketio.web.openapi import build_document

TASKS = "/api/v1/db/task"
NOTICES = "/api/v1/db/notice"
LEDGERS = "/api/v1/db/ledger"


class Task(Entity):
    name = "task"
    read = OWNER | user_field("assignee") | Custom(lambda user: {"public": True}, "anyone")
    update = user_field("assignee")
    delete = OWNER

    class Fields(Shape):
        title: Annotated[str, Text(max_length=100)]
        assignee: Annotated[ObjectId, Ref("user")] | None = None
        public: bool | None = None


class Notice(Entity):
    """Everyone reads notices; nobody edits them; their owner deletes them."""

    name = "notice"
    read = SIGNED_IN
    update = NOBODY

    class Fields(Shape):
        text: Annotated[str, Text(max_length=100)]
        task: Annotated[ObjectId, Ref("task")] | None = None


class Ledger(Entity):
    """An entity that decides creation and deletion itself (overridden methods)."""

    name = "ledger"

    class Fields(Shape):
        text: Annotated[str, Text(max_length=100)]

    def may_create(self, user: Principal) -> bool:
        """Only users named like an archivist."""
        return (user.username or "").startswith("archivist")

    def deletable_by(self, user: Principal) -> dict[str, Any]:
        """Nobody, ever."""
        return {"_id": {"$in": []}}


class Paused:
    """A ``before_update`` hook that holds the first update until ``release``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.released = asyncio.Event()
        self.held = False

    async def before_update(self, ctx: ActionContext, doc: dict[str, Any]) -> None:
        if not self.held:
            self.held = True
            self.reached.set()
            await self.released.wait()


@pytest.fixture
def paused() -> Paused:
    return Paused()


@pytest.fixture
def app(app, paused):
    """The application, also serving task, notice and ledger; task's updates go
    through ``paused``'s hook."""
    routes = entity_routes((*ENTITIES, Task(), Notice(), Ledger()), ACTIONS_PACKAGE)
    extra = routes[2 * len(ENTITIES) :]
    task_kwargs = extra[0][2]
    task_kwargs["actions"] = Actions(types.SimpleNamespace(before_update=paused.before_update))  # type: ignore[arg-type]
    paused.released.set()  # no hold unless a test clears it
    app.add_handlers(r".*", extra)
    return app


def principal(user_id: str) -> Principal:
    return Principal(user_id, None, (), "jti", dt.datetime.now(dt.UTC))


async def create(api, user, path, body):
    created = await api.request("POST", path, body, token=user.token)
    assert created.status == 201, created.body
    key = path.rsplit("/", 1)[1]
    return created.body[key]


async def listed(api, user, path=TASKS):
    page = await api.request("GET", path, token=user.token)
    assert page.status == 200
    return {doc["_id"] for doc in page.body[f"{path.rsplit('/', 1)[1]}s"]}


@pytest.mark.gen_test(timeout=30)
async def test_reads_follow_the_read_rule_in_gets_and_lists(api):
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    assigned = await create(api, ada, TASKS, {"title": "for bob", "assignee": bob.id})
    private = await create(api, ada, TASKS, {"title": "ada's own"})
    public = await create(api, ada, TASKS, {"title": "for all", "public": True})

    assert await listed(api, ada) == {assigned["_id"], private["_id"], public["_id"]}
    assert await listed(api, bob) == {assigned["_id"], public["_id"]}
    assert await listed(api, carol) == {public["_id"]}
    for user, task, status in (
        (bob, assigned, 200),
        (bob, private, 404),
        (carol, assigned, 404),
        (carol, public, 200),
    ):
        read = await api.request("GET", f"{TASKS}/{task['_id']}", token=user.token)
        assert read.status == status, (user.username, task["title"])

    # A reference to a task must name one the caller may read.
    for task, status in ((private, 404), (public, 201)):
        body = {"text": "see", "task": task["_id"]}
        answer = await api.request("POST", NOTICES, body, token=carol.token)
        assert answer.status == status, task["title"]


@pytest.mark.gen_test(timeout=30)
async def test_updates_follow_the_update_rule_403_if_readable_else_404(api):
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    task = await create(api, ada, TASKS, {"title": "draft", "assignee": bob.id})
    path = f"{TASKS}/{task['_id']}"

    owner = await api.request("PUT", path, {"title": "by ada"}, token=ada.token)
    assert (owner.status, owner.error_code) == (403, "forbidden")  # the owner may read, not change
    stranger = await api.request("PUT", path, {"title": "by carol"}, token=carol.token)
    assert (stranger.status, stranger.error_code) == (404, "not_found")  # no existence leak
    assignee = await api.request("PUT", path, {"title": "by bob"}, token=bob.token)
    assert (assignee.status, assignee.body["task"]["title"]) == (200, "by bob")

    # Made public, carol may read it, still not change it: 403 now.
    await api.request("PUT", path, {"public": True}, token=bob.token)
    stranger = await api.request("PUT", path, {"title": "by carol"}, token=carol.token)
    assert (stranger.status, stranger.error_code) == (403, "forbidden")

    # The assignee hands it over: bob loses the right, carol gains it.
    assert (await api.request("PUT", path, {"assignee": carol.id}, token=bob.token)).status == 200
    assert (await api.request("PUT", path, {"title": "bob"}, token=bob.token)).status == 403
    assert (await api.request("PUT", path, {"title": "carol"}, token=carol.token)).status == 200
    read = await api.request("GET", path, token=ada.token)
    assert read.body["task"]["title"] == "carol"


@pytest.mark.gen_test(timeout=30)
async def test_deletes_follow_the_delete_rule_403_if_readable_else_404(api, db, monkeypatch):
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    task = await create(api, ada, TASKS, {"title": "draft", "assignee": bob.id})
    path = f"{TASKS}/{task['_id']}"
    filters: list[dict[str, Any]] = []
    delete_document = store.delete_document

    async def spy(collection, owned_by, doc_id, accepted):
        filters.append(owned_by)
        return await delete_document(collection, owned_by, doc_id, accepted)

    monkeypatch.setattr(store, "delete_document", spy)

    assignee = await api.request("DELETE", path, token=bob.token)
    assert (assignee.status, assignee.error_code) == (403, "forbidden")
    stranger = await api.request("DELETE", path, token=carol.token)
    assert (stranger.status, stranger.error_code) == (404, "not_found")
    assert await db["tasks"].count_documents({}) == 1
    assert (await api.request("DELETE", path, token=ada.token)).status == 204
    assert await db["tasks"].count_documents({}) == 0
    # The delete's own filter holds the rule (and the read rule).
    assert filters == [
        {"$and": [Task().readable_by(principal(ada.id)), {"owner._id": ObjectId(ada.id)}]}
    ]


@pytest.mark.gen_test(timeout=30)
async def test_signed_in_nobody_and_overridden_methods(api, db):
    ada, bob = await api.new_user("ada"), await api.new_user("bob")
    notice = await create(api, ada, NOTICES, {"text": "hello"})
    path = f"{NOTICES}/{notice['_id']}"
    assert await listed(api, bob, NOTICES) == {notice["_id"]}  # read = SIGNED_IN
    for user in (ada, bob):  # update = NOBODY: not even its owner
        refused = await api.request("PUT", path, {"text": "edited"}, token=user.token)
        assert (refused.status, refused.error_code) == (403, "forbidden")
    assert (await api.request("DELETE", path, token=bob.token)).status == 403  # OWNER
    assert (await api.request("DELETE", path, token=ada.token)).status == 204

    refused = await api.request("POST", LEDGERS, {"text": "x"}, token=ada.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    archivist = await api.new_user("archivist1")
    ledger = await create(api, archivist, LEDGERS, {"text": "kept"})
    path = f"{LEDGERS}/{ledger['_id']}"
    assert (await api.request("DELETE", path, token=archivist.token)).status == 403
    assert (await api.request("DELETE", path, token=ada.token)).status == 404  # read = OWNER
    assert await db["ledgers"].count_documents({}) == 1


@pytest.mark.gen_test(timeout=30)
async def test_an_update_in_flight_when_the_assignee_changes_does_not_land(api, db, paused):
    """bob's update passes the check, then waits in its hook; meanwhile bob hands the
    task to carol. The write's filter holds the rule, so it matches nothing."""
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    task = await create(api, ada, TASKS, {"title": "v1", "assignee": bob.id, "public": True})
    path = f"{TASKS}/{task['_id']}"

    paused.released.clear()
    late = asyncio.ensure_future(api.request("PUT", path, {"title": "late"}, token=bob.token))
    await asyncio.wait_for(paused.reached.wait(), 10)
    handed = await api.request("PUT", path, {"assignee": carol.id}, token=bob.token)
    assert handed.status == 200
    paused.released.set()
    refused = await late
    assert (refused.status, refused.error_code) == (403, "forbidden")  # bob may still read it
    stored = await db["tasks"].find_one({"_id": ObjectId(task["_id"])})
    assert (stored["title"], stored["assignee"], stored["version"]) == ("v1", ObjectId(carol.id), 2)


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_writes_by_users_not_allowed_never_match(api, db, monkeypatch):
    ada, bob, carol = await api.new_user("ada"), await api.new_user("bob"), await api.new_user()
    task = await create(api, ada, TASKS, {"title": "v1", "assignee": bob.id, "public": True})
    path = f"{TASKS}/{task['_id']}"
    filters: list[dict[str, Any]] = []
    update_fields = store.update_fields

    async def spy(collection, owned_by, doc_id, fields, accepted):
        filters.append(owned_by)
        return await update_fields(collection, owned_by, doc_id, fields, accepted)

    monkeypatch.setattr(store, "update_fields", spy)

    answers = await asyncio.gather(
        *(api.request("PUT", path, {"title": f"bob {n}"}, token=bob.token) for n in range(5)),
        *(api.request("PUT", path, {"title": f"ada {n}"}, token=ada.token) for n in range(5)),
        *(api.request("PUT", path, {"title": f"carol {n}"}, token=carol.token) for n in range(5)),
        *(api.request("DELETE", path, token=carol.token) for _ in range(3)),
        *(api.request("DELETE", path, token=bob.token) for _ in range(3)),
    )
    statuses = [answer.status for answer in answers]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [403] * 16
    stored = await db["tasks"].find_one({"_id": ObjectId(task["_id"])})
    assert stored["title"].startswith("bob ")
    assert stored["version"] == 6
    # Every update's filter holds the rule itself (not only the check before it).
    assert len(filters) == 5
    assert all({"assignee": ObjectId(bob.id)} in f["$and"] for f in filters)

    # The assignee changes while carol's and bob's updates race: of bob's, only
    # those before the hand-over land; every one of carol's after it may land.
    answers = await asyncio.gather(
        api.request("PUT", path, {"assignee": carol.id}, token=bob.token),
        *(api.request("PUT", path, {"title": f"late {n}"}, token=bob.token) for n in range(4)),
    )
    assert answers[0].status == 200
    stored = await db["tasks"].find_one({"_id": ObjectId(task["_id"])})
    landed = [answer for answer in answers[1:] if answer.status == 200]
    assert all(answer.status in (200, 403) for answer in answers[1:])
    assert stored["version"] == 7 + len(landed)
    assert stored["assignee"] == ObjectId(carol.id)
    if stored["title"].startswith("late "):
        assert any(answer.body["task"]["title"] == stored["title"] for answer in landed)


@pytest.mark.gen_test(timeout=30)
async def test_the_openapi_operations_say_the_policy(app):
    document = build_document(app)
    validate(document)
    paths = document["paths"]
    assert paths[f"{TASKS}/{{id}}"]["put"]["summary"] == "Change a task (its assignee only)"
    assert paths[f"{TASKS}/{{id}}"]["delete"]["summary"] == "Delete a task (its owner only)"
    assert "its owner, its assignee or anyone" in paths[f"{TASKS}/{{id}}"]["get"]["description"]
    assert "its owner, its assignee or anyone" in paths[TASKS]["get"]["description"]
    assert paths[TASKS]["post"]["summary"] == "Create a task"
    assert paths[f"{NOTICES}/{{id}}"]["put"]["summary"] == "Change a notice (nobody)"
    assert "any signed-in user" in paths[NOTICES]["get"]["description"]
    ledger = "Create a ledger (only users named like an archivist)"
    assert paths[LEDGERS]["post"]["summary"] == ledger
    assert paths[f"{LEDGERS}/{{id}}"]["delete"]["summary"] == "Delete a ledger (nobody, ever)"
    # The example's message keeps its owner-only writes, and its readable_by override.
    message = paths["/api/v1/db/message/{id}"]
    assert message["put"]["summary"] == "Change a message (its author only)"
    assert message["delete"]["summary"] == (
        "Delete a message (its author or members of moderators only)"
    )
    assert (
        "sent by the user, addressed to them, broadcast, or in a channel they may join"
        in message["get"]["description"]
    )
    forbidden = message["put"]["responses"]["403"]["description"]
    assert "may read this message but not change it" in forbidden


def test_rules_compose_and_are_checked_at_start_up():
    user = principal("0" * 24)
    task = Task()
    me = ObjectId(user.user_id)
    assert task.readable_by(user) == {
        "$or": [{"owner._id": me}, {"assignee": me}, {"public": True}]
    }
    assert task.changeable_by(user) == {"assignee": me}
    assert task.deletable_by(user) == {"owner._id": me}
    assert (OWNER | SIGNED_IN).query(task, user) == {}
    assert (NOBODY | OWNER).query(task, user) == {"owner._id": me}
    assert (OWNER | user_field("assignee")).describe(task) == "its owner or its assignee only"
    assert isinstance(OWNER | NOBODY, Rule)

    class Wrong(Task):
        name = "wrong"
        update = user_field("title")  # not a Ref("user")

    with pytest.raises(ModelError, match=r"user_field\('title'\) names no Ref"):
        entity_routes((*ENTITIES, Wrong()), ACTIONS_PACKAGE)

    class NotARule(Task):
        name = "not_a_rule"
        delete = "owner"  # type: ignore[assignment]

    with pytest.raises(ModelError, match="delete must be a Rule"):
        entity_routes((*ENTITIES, NotARule()), ACTIONS_PACKAGE)


def test_a_custom_rule_that_returns_no_filter_fails_closed():
    """``a | Custom(...)``: a Custom rule returning None for some users (here, those in
    no team) made the whole rule "no condition", and let them read every document
    (found by a review). It is refused instead: the request fails, nothing is read."""
    member = Principal("0" * 24, None, ("team",), "jti", dt.datetime.now(dt.UTC))
    loner = principal("1" * 24)

    class Shared(Task):
        name = "shared"
        read = OWNER | Custom(lambda user: {"team": True} if user.groups else None, "its team")

    shared = Shared()
    assert shared.readable_by(member) == {
        "$or": [{"owner._id": ObjectId(member.user_id)}, {"team": True}]
    }
    with pytest.raises(TypeError, match=r"returned NoneType, not a filter"):
        shared.readable_by(loner)
    everyone = Custom(lambda user: {}, "anyone")
    assert (OWNER | everyone).query(shared, loner) == {}  # {} still means everyone
