"""Access by group, by anyone, and who may create (models/access.py).

``post``: members of readers or editors read it, editors change it, moderators delete
it. ``draft``: its owner or an editor reads and changes it, its owner or a moderator
deletes it. ``bulletin``: anyone reads it, even without a token; members of staff
create it. ``vault``: nobody creates one. Each rule is checked both ways over HTTP,
in lists, in the filters the writes use, in the OpenAPI document, at start-up and
under concurrent requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Annotated, Any

import pytest
from bson import ObjectId
from example_app.models import ACTIONS_PACKAGE, ENTITIES
from openapi_spec_validator import validate

from transom_socketio.auth.tokens import Principal
from transom_socketio.models import store
from transom_socketio.models.access import (
    ANYONE,
    MATCHES_NOTHING,
    NOBODY,
    OWNER,
    SIGNED_IN,
    Custom,
    Rule,
    group,
    user_field,
)
from transom_socketio.models.base import Entity
from transom_socketio.models.errors import ModelError
from transom_socketio.shapes import Ref, Shape, Text
from transom_socketio.testing.clients import User
from transom_socketio.web.entities import entity_routes
from transom_socketio.web.openapi import build_document

POSTS = "/api/v1/db/post"
DRAFTS = "/api/v1/db/draft"
BULLETINS = "/api/v1/db/bulletin"
VAULTS = "/api/v1/db/vault"
MESSAGES = "/api/v1/db/message"


class Title(Shape):
    title: Annotated[str, Text(max_length=100)]


class Post(Entity):
    name = "post"
    read = group("readers", "editors")
    update = group("editors")
    delete = group("moderators")
    Fields = Title


class Draft(Entity):
    name = "draft"
    read = OWNER | group("editors")
    update = OWNER | group("editors")
    delete = OWNER | group("moderators")
    Fields = Title


class Bulletin(Entity):
    name = "bulletin"
    read = ANYONE
    create = group("staff")
    delete = OWNER | group("moderators")
    Fields = Title


class Vault(Entity):
    name = "vault"
    read = SIGNED_IN
    create = NOBODY
    Fields = Title


EXTRA = (Post(), Draft(), Bulletin(), Vault())


@pytest.fixture
def app(app):
    """The application, also serving post, draft, bulletin and vault."""
    routes = entity_routes((*ENTITIES, *EXTRA), ACTIONS_PACKAGE)
    app.add_handlers(r".*", routes[2 * len(ENTITIES) :])
    return app


async def in_groups(api, db, user: User, *groups: str) -> User:
    """``user``, put in ``groups``, with a JWT that says so (a new login)."""
    await db["users"].update_one({"_id": ObjectId(user.id)}, {"$set": {"groups": list(groups)}})
    logged_in = await api.login(user.username)
    assert logged_in.status == 200, logged_in.body
    return dataclasses.replace(user, token=logged_in.body["token"])


async def new_user(api, db, name: str, *groups: str) -> User:
    user = await api.new_user(name)
    return await in_groups(api, db, user, *groups) if groups else user


def principal(user: User, *groups: str) -> Principal:
    return Principal(user.id, user.username, groups, "jti", dt.datetime.now(dt.UTC))


async def create(api, user: User, path: str, title: str) -> dict[str, Any]:
    created = await api.request("POST", path, {"title": title}, token=user.token)
    assert created.status == 201, created.body
    return created.body[path.rsplit("/", 1)[1]]


async def listed(api, path: str, user: User | None) -> set[str]:
    page = await api.request("GET", path, token=user.token if user else None)
    assert page.status == 200, page.body
    return {doc["_id"] for doc in page.body[f"{path.rsplit('/', 1)[1]}s"]}


async def matched(db, entity: Entity, user: Principal, action: str) -> int:
    """How many documents the filter of ``action`` (as the handlers build it) matches."""
    readable = entity.readable_by(user)
    rule = {
        "read": readable,
        "update": {"$and": [readable, entity.changeable_by(user)]},
        "delete": {"$and": [readable, entity.deletable_by(user)]},
    }[action]
    return await db[entity.collection].count_documents(rule)


@pytest.mark.gen_test(timeout=60)
async def test_group_rules_both_ways_in_gets_lists_updates_and_deletes(api, db):
    editor = await new_user(api, db, "eddie", "editors")
    reader = await new_user(api, db, "rita", "readers")
    moderator = await new_user(api, db, "moe", "moderators")
    reading_moderator = await new_user(api, db, "mora", "readers", "moderators")
    outsider = await new_user(api, db, "otto")
    first = await create(api, editor, POSTS, "first")
    second = await create(api, outsider, POSTS, "by an outsider")  # create: SIGNED_IN
    both = {first["_id"], second["_id"]}

    # read = readers or editors: in lists and GETs, and nobody else (not the author).
    for user, expected in (
        (editor, both),
        (reader, both),
        (reading_moderator, both),
        (moderator, set()),
        (outsider, set()),
    ):
        assert await listed(api, POSTS, user) == expected, user.username
        answer = await api.request("GET", f"{POSTS}/{second['_id']}", token=user.token)
        assert answer.status == (200 if expected else 404), user.username

    # update = editors: a reader gets 403, who may not read it 404, an editor changes it.
    path = f"{POSTS}/{first['_id']}"
    for user, status in ((reader, 403), (reading_moderator, 403), (moderator, 404)):
        refused = await api.request("PUT", path, {"title": "no"}, token=user.token)
        assert refused.status == status, user.username
    changed = await api.request("PUT", path, {"title": "edited"}, token=editor.token)
    assert (changed.status, changed.body["post"]["title"]) == (200, "edited")

    # delete = moderators, of the posts they may read: the moderator who is no reader
    # gets 404, an editor (even the author) 403, the reading moderator deletes.
    for user, status in ((moderator, 404), (editor, 403), (reader, 403), (outsider, 404)):
        refused = await api.request("DELETE", path, token=user.token)
        assert refused.status == status, user.username
    assert await db["posts"].count_documents({}) == 2
    assert (await api.request("DELETE", path, token=reading_moderator.token)).status == 204
    assert await listed(api, POSTS, reader) == {second["_id"]}

    # The filters the handlers put in their queries match nothing outside the rule.
    post = Post()
    for groups, read, update, delete in (
        (("editors",), 1, 1, 0),
        (("readers",), 1, 0, 0),
        (("readers", "moderators"), 1, 0, 1),
        (("moderators",), 0, 0, 0),
        ((), 0, 0, 0),
    ):
        user = principal(outsider, *groups)
        counts = [await matched(db, post, user, a) for a in ("read", "update", "delete")]
        assert counts == [read, update, delete], groups


@pytest.mark.gen_test(timeout=60)
async def test_owner_or_group_both_ways(api, db):
    ada, bob = await new_user(api, db, "ada"), await new_user(api, db, "bob")
    editor = await new_user(api, db, "eddie", "editors")
    moderator = await new_user(api, db, "moe", "moderators")
    chief = await new_user(api, db, "chief", "editors", "moderators")
    mine = await create(api, ada, DRAFTS, "ada's")
    his = await create(api, bob, DRAFTS, "bob's")
    modded = await create(api, moderator, DRAFTS, "mo's")
    everything = {mine["_id"], his["_id"], modded["_id"]}

    # read = OWNER | editors: the owner their own, an editor all, a moderator their own.
    assert await listed(api, DRAFTS, ada) == {mine["_id"]}
    assert await listed(api, DRAFTS, bob) == {his["_id"]}
    assert await listed(api, DRAFTS, editor) == everything
    assert await listed(api, DRAFTS, chief) == everything
    assert await listed(api, DRAFTS, moderator) == {modded["_id"]}

    # update = OWNER | editors.
    path = f"{DRAFTS}/{mine['_id']}"
    assert (await api.request("PUT", path, {"title": "x"}, token=bob.token)).status == 404
    assert (await api.request("PUT", path, {"title": "x"}, token=moderator.token)).status == 404
    assert (await api.request("PUT", path, {"title": "eddie"}, token=editor.token)).status == 200
    assert (await api.request("PUT", path, {"title": "ada"}, token=ada.token)).status == 200

    # delete = OWNER | moderators, of what they read: an editor 403, a moderator who
    # may not read it 404, a moderator who may (chief) and the owner delete.
    refused = await api.request("DELETE", path, token=editor.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    assert (await api.request("DELETE", path, token=moderator.token)).status == 404
    assert (await api.request("DELETE", path, token=bob.token)).status == 404
    assert (await api.request("DELETE", path, token=chief.token)).status == 204
    assert (await api.request("DELETE", f"{DRAFTS}/{his['_id']}", token=bob.token)).status == 204
    assert await listed(api, DRAFTS, editor) == {modded["_id"]}

    # The pipe: one branch that allows everything makes the filter empty.
    draft = Draft()
    me = ObjectId(ada.id)
    assert draft.readable_by(principal(ada)) == {"owner._id": me}
    assert draft.readable_by(principal(ada, "editors")) == {}
    assert draft.deletable_by(principal(ada, "editors")) == {"owner._id": me}
    assert draft.deletable_by(principal(ada, "moderators")) == {}
    either = OWNER | user_field("title") | group("editors")
    assert either.query(draft, principal(ada)) == {"$or": [{"owner._id": me}, {"title": me}]}
    assert (NOBODY | group("editors")).query(draft, principal(ada)) == MATCHES_NOTHING
    assert counts_of(await all_counts(db, draft, principal(bob))) == (0, 0, 0)
    assert counts_of(await all_counts(db, draft, principal(bob, "moderators"))) == (0, 0, 0)
    assert counts_of(await all_counts(db, draft, principal(bob, "editors"))) == (1, 1, 0)
    chief_counts = await all_counts(db, draft, principal(bob, "editors", "moderators"))
    assert counts_of(chief_counts) == (1, 1, 1)


async def all_counts(db, entity: Entity, user: Principal) -> dict[str, int]:
    return {a: await matched(db, entity, user, a) for a in ("read", "update", "delete")}


def counts_of(counts: dict[str, int]) -> tuple[int, int, int]:
    return counts["read"], counts["update"], counts["delete"]


@pytest.mark.gen_test(timeout=60)
async def test_anyone_reads_without_a_token_but_writes_need_one(api, db):
    staff = await new_user(api, db, "sam", "staff")
    other = await new_user(api, db, "olga")
    bulletin = await create(api, staff, BULLETINS, "open day")
    path = f"{BULLETINS}/{bulletin['_id']}"

    # No token, a token, anyone's: the list and the item.
    for user in (None, other, staff):
        assert await listed(api, BULLETINS, user) == {bulletin["_id"]}
        read = await api.request("GET", path, token=user.token if user else None)
        assert (read.status, read.body["bulletin"]["title"]) == (200, "open day")
        assert read.headers["ETag"] == '"1"'
    head = await api.request("HEAD", path)
    assert (head.status, head.body) == (200, None)
    missing = await api.request("GET", f"{BULLETINS}/{ObjectId()}")
    assert (missing.status, missing.error_code) == (404, "not_found")
    bad_id = await api.request("GET", f"{BULLETINS}/123")
    assert (bad_id.status, bad_id.error_code) == (400, "invalid_id")
    paged = await api.request("GET", f"{BULLETINS}?limit=0")
    assert (paged.status, paged.error_code) == (400, "validation_error")

    # A token given must be valid: no silent fall-back to anonymous.
    for token in ("not-a-jwt", staff.token + "x"):
        refused = await api.request("GET", path, token=token)
        assert (refused.status, refused.error_code) == (401, "invalid_token")
        refused = await api.request("GET", BULLETINS, token=token)
        assert (refused.status, refused.error_code) == (401, "invalid_token")
    basic = await api.request("GET", path, headers={"Authorization": "Basic eDp5"})
    assert (basic.status, basic.error_code) == (401, "invalid_token")

    # Writes without a token: 401, nothing changes.
    for method, url, body in (
        ("POST", BULLETINS, {"title": "anon"}),
        ("PUT", path, {"title": "anon"}),
        ("PATCH", path, {"title": "anon"}),
        ("DELETE", path, None),
    ):
        refused = await api.request(method, url, body)
        assert (refused.status, refused.error_code) == (401, "authentication_required"), method
    stored = await db["bulletins"].find_one({"_id": ObjectId(bulletin["_id"])})
    assert (stored["title"], stored["version"]) == ("open day", 1)
    assert await db["bulletins"].count_documents({}) == 1

    # Entities whose read needs a signed-in user still refuse anonymous reads.
    for url in (POSTS, DRAFTS, VAULTS, MESSAGES, f"{MESSAGES}/{ObjectId()}"):
        refused = await api.request("GET", url)
        assert (refused.status, refused.error_code) == (401, "authentication_required"), url

    # delete = OWNER | moderators over read = ANYONE: a moderator deletes any bulletin.
    refused = await api.request("DELETE", path, token=other.token)
    assert (refused.status, refused.error_code) == (403, "forbidden")
    moderator = await in_groups(api, db, other, "moderators")
    assert (await api.request("DELETE", path, token=moderator.token)).status == 204
    assert await listed(api, BULLETINS, None) == set()


@pytest.mark.gen_test(timeout=60)
async def test_create_rules_group_and_nobody(api, db):
    staff = await new_user(api, db, "sam", "staff")
    editor = await new_user(api, db, "eddie", "editors")
    everyone = await new_user(api, db, "all", "staff", "editors", "moderators", "admin")

    # create = group("staff"): a member 201, anyone else 403 (before the body is read).
    assert (await create(api, staff, BULLETINS, "by staff"))["owner"]["_id"] == staff.id
    for body in ({"title": "by an editor"}, {"nonsense": 1}):
        refused = await api.request("POST", BULLETINS, body, token=editor.token)
        assert (refused.status, refused.error_code) == (403, "forbidden")
        assert "members of staff" in refused.body["error"]["message"]
    assert await db["bulletins"].count_documents({}) == 1
    # A group joined shows in the next JWT.
    joined = await in_groups(api, db, editor, "editors", "staff")
    await create(api, joined, BULLETINS, "by a new member")
    assert await db["bulletins"].count_documents({}) == 2

    # create = NOBODY: not even a member of every group.
    for user in (staff, everyone):
        refused = await api.request("POST", VAULTS, {"title": "x"}, token=user.token)
        assert (refused.status, refused.error_code) == (403, "forbidden")
    assert await db["vaults"].count_documents({}) == 0

    assert Bulletin().may_create(principal(staff, "staff"))
    assert not Bulletin().may_create(principal(staff, "editors"))
    assert not Vault().may_create(principal(staff, "staff"))
    assert Post().may_create(principal(staff))  # the default: SIGNED_IN


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_updates_by_a_member_and_a_non_member(api, db, monkeypatch):
    editor = await new_user(api, db, "eddie", "editors")
    reader = await new_user(api, db, "rita", "readers")
    post = await create(api, editor, POSTS, "v1")
    path = f"{POSTS}/{post['_id']}"
    filters: list[dict[str, Any]] = []
    update_fields = store.update_fields

    async def spy(collection, owned_by, doc_id, fields, accepted):
        filters.append(owned_by)
        return await update_fields(collection, owned_by, doc_id, fields, accepted)

    monkeypatch.setattr(store, "update_fields", spy)

    answers = await asyncio.gather(
        *(
            api.request("PUT", path, {"title": f"{who.username} {n}"}, token=who.token)
            for n in range(6)
            for who in (reader, editor)
        ),
        *(api.request("DELETE", path, token=editor.token) for _ in range(2)),
    )
    by_reader, by_editor = answers[:12:2], answers[1:12:2]
    assert [a.status for a in by_reader] == [403] * 6
    assert [a.status for a in by_editor] == [200] * 6
    assert all(a.error_code == "forbidden" for a in (*by_reader, *answers[12:]))
    assert [a.status for a in answers[12:]] == [403, 403]  # delete: moderators only
    stored = await db["posts"].find_one({"_id": ObjectId(post["_id"])})
    assert stored["title"].startswith("eddie ")
    assert stored["version"] == 7
    # Only the editor's updates reached the write; its filter holds both rules, which
    # allow an editor everything. A reader's would match nothing.
    assert filters == [{"$and": [{}, {}]}] * 6
    reader_filter = {
        "$and": [
            Post().readable_by(principal(reader, "readers")),
            Post().changeable_by(principal(reader, "readers")),
        ]
    }
    assert await db["posts"].count_documents(reader_filter) == 0
    assert await db["posts"].count_documents({"$and": [{}, {}]}) == 1


@pytest.mark.gen_test(timeout=30)
async def test_the_openapi_operations_say_the_rules(app):
    document = build_document(app)
    validate(document)
    paths = document["paths"]
    bearer, optional = [{"bearerAuth": []}], [{}, {"bearerAuth": []}]

    # ANYONE reads: the GETs (and HEADs) take a token or none; writes need one.
    for path in (BULLETINS, f"{BULLETINS}/{{id}}"):
        for method in ("get", "head"):
            operation = paths[path][method]
            assert operation["security"] == optional, (path, method)
            assert "anyone, signed in or not" in operation["description"]
            assert "No token needed" in operation["description"]
            unauthorized = operation["responses"]["401"]
            assert unauthorized["description"].startswith("`invalid_token`")
            assert unauthorized["headers"]["WWW-Authenticate"]["required"]
    for path, method in ((BULLETINS, "post"), (f"{BULLETINS}/{{id}}", "put")):
        assert paths[path][method]["security"] == bearer
    assert paths[f"{BULLETINS}/{{id}}"]["delete"]["security"] == bearer
    for path in (POSTS, DRAFTS, VAULTS, MESSAGES):
        assert paths[path]["get"]["security"] == bearer, path
        assert "No token needed" not in paths[path]["get"]["description"]

    # Who creates.
    bulletins = paths[BULLETINS]["post"]
    assert bulletins["summary"] == "Create a bulletin (members of staff only)"
    assert "Who may create a bulletin: members of staff only." in bulletins["description"]
    assert "members of staff only" in bulletins["responses"]["403"]["description"]
    assert paths[VAULTS]["post"]["summary"] == "Create a vault (nobody)"
    assert paths[POSTS]["post"]["summary"] == "Create a post"
    assert "Who may create a post: any signed-in user." in paths[POSTS]["post"]["description"]

    # Groups, and a group joined to the owner.
    post = paths[f"{POSTS}/{{id}}"]
    assert "Who may read a post: members of readers or editors only" in post["get"]["description"]
    assert post["put"]["summary"] == "Change a post (members of editors only)"
    assert post["delete"]["summary"] == "Delete a post (members of moderators only)"
    draft = paths[f"{DRAFTS}/{{id}}"]
    assert draft["put"]["summary"] == "Change a draft (its owner or members of editors only)"
    assert draft["delete"]["summary"] == "Delete a draft (its owner or members of moderators only)"
    bulletin = paths[f"{BULLETINS}/{{id}}"]
    assert bulletin["delete"]["summary"] == (
        "Delete a bulletin (its owner or members of moderators only)"
    )
    # The example's message: its author, or a moderator, deletes it.
    message = paths[f"{MESSAGES}/{{id}}"]
    assert message["delete"]["summary"] == (
        "Delete a message (its author or members of moderators only)"
    )
    assert message["put"]["summary"] == "Change a message (its author only)"


def refused(entity: Entity) -> str:
    with pytest.raises(ModelError) as caught:
        entity_routes((*ENTITIES, entity), ACTIONS_PACKAGE)
    message = str(caught.value)
    assert "\n" not in message
    return message


def named(name: str, **rules: Rule) -> Entity:
    return type("Odd", (Entity,), {"name": name, "Fields": Title, **rules})()


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"update": ANYONE}, "entity odd: update may not allow ANYONE (only read may)"),
        ({"delete": OWNER | ANYONE}, "entity odd: delete may not allow ANYONE"),
        ({"create": ANYONE}, "entity odd: create may not allow ANYONE"),
        ({"create": OWNER}, "entity odd: create may not be 'its owner', a rule on a document"),
        ({"create": user_field("boss")}, "entity odd: create may not be 'its boss'"),
        ({"create": Custom(lambda user: {}, "the boss")}, "create may not be 'the boss'"),
        ({"create": SIGNED_IN | OWNER}, "entity odd: create may not be 'any signed-in user'"),
        ({"create": "staff"}, "entity odd: create must be a Rule"),
    ],
)
def test_rules_out_of_place_stop_start_up(rules: dict[str, Any], expected: str) -> None:
    class Boss(Shape):
        title: Annotated[str, Text(max_length=10)]
        boss: Annotated[ObjectId, Ref("user")] | None = None

    odd = type("Odd", (Entity,), {"name": "odd", "Fields": Boss, **rules})()
    assert expected in refused(odd)


def test_rules_that_fit_pass_start_up() -> None:
    fine = named(
        "fine",
        read=ANYONE | OWNER,
        create=group("staff") | NOBODY | SIGNED_IN,
        update=OWNER | group("editors"),
        delete=NOBODY,
    )
    routes = entity_routes((*ENTITIES, fine), ACTIONS_PACKAGE)
    assert tuple(p for p, *_ in routes[-2:]) == (r"/api/v1/db/fine", r"/api/v1/db/fine/([^/]+)")
    assert fine.readable_anonymously() == {}
    assert Post().readable_anonymously() is None

    class Decided(Entity):
        name = "decided"
        read = ANYONE
        Fields = Title

        def readable_by(self, user: Principal) -> dict[str, Any]:
            """Its owner."""
            return {"owner._id": ObjectId(user.user_id)}

    # An overridden readable_by decides, for signed-in callers only.
    assert Decided().readable_anonymously() is None
    assert Decided().access("read") == "its owner"

    class DecidedByItsFormerName(Entity):
        name = "former"
        read = ANYONE
        Fields = Title

        def visible_to(self, user: Principal) -> dict[str, Any]:
            """Its owner."""
            return {"owner._id": ObjectId(user.user_id)}

    # ``visible_to``, the former name of readable_by, still decides in its place.
    former = DecidedByItsFormerName()
    ada = ObjectId()
    reader = Principal(str(ada), "ada", (), "jti", dt.datetime.now(dt.UTC))
    assert former.readable_by(reader) == {"owner._id": ada}
    assert former.readable_anonymously() is None
    assert former.access("read") == "its owner"


@pytest.mark.parametrize(
    "names",
    [
        (),
        ("",),
        ("Moderators",),
        ("mod erators",),
        ("-mods",),
        ("mods\n",),
        ("m" * 65,),
        ("ok", "no!"),
    ],
)
def test_bad_group_names_are_refused_where_the_rule_is_written(names: tuple[str, ...]) -> None:
    with pytest.raises(ModelError) as caught:
        group(*names)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("group(")


def test_group_names_that_fit() -> None:
    assert group("moderators", "a", "0-team_2", "m" * 64).who(Post()) == (
        f"members of moderators, a, 0-team_2 or {'m' * 64}"
    )
    with pytest.raises(ModelError):
        group(["moderators"])  # type: ignore[arg-type]
