"""One-time socket tokens (issue 3): issue, hashed storage, TTL, single use."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import socket
import uuid
from typing import Any

import jwt
import pytest
from pymongo.errors import PyMongoError

from transom_socketio import db as database
from transom_socketio import registry as keys
from transom_socketio.auth import nonces as nonces_module
from transom_socketio.auth.nonces import CHECKED_AT, SocketTokenStore
from transom_socketio.auth.tokens import TokenService

SOCKET_TOKEN = "/api/v1/user/sockettoken"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
TTL_COLLECTIONS = ("socket_tokens", "revoked_tokens", "login_failures")


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def all_documents(db: Any) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for name in await db.list_collection_names():
        documents.extend(await db[name].find({}).to_list(None))
    return documents


async def principal_of(registry: Any, jwt_token: str) -> Any:
    tokens: TokenService = registry[keys.TOKENS]
    return await tokens.authenticate(jwt_token)


async def new_principal(api: Any, registry: Any) -> Any:
    """A new user's principal, as an authenticated request of theirs has it."""
    user = await api.new_user()
    return await principal_of(registry, user.token)


async def issued(store: SocketTokenStore, principal: Any, count: int) -> list[str]:
    """``count`` socket tokens that ``store`` issued to ``principal``."""
    return [(await store.issue(principal)).token for _ in range(count)]


def grant_of(principal: Any, *, issued_here: bool = False) -> dict[str, Any]:
    """What a handshake learns from a token: the user, the JWT's id, its expiry and the
    session epoch of its login; for a token this process issued, also when its request's
    revocation check was sent (``CHECKED_AT``, a time of this process, never stored)."""
    exp = int(principal.expires_at.timestamp())
    snapshot = principal.snapshot()
    grant = {"user": snapshot, "jti": principal.jti, "exp": exp, "sep": principal.session_epoch}
    if issued_here:
        grant[CHECKED_AT] = principal._revocation_checked_at
    return grant


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.gen_test
async def test_get_or_post_issues_a_fresh_url_safe_token(api, method):
    user = await api.new_user()
    first = await api.request(method, SOCKET_TOKEN, token=user.token)
    second = await api.request(method, SOCKET_TOKEN, token=user.token)
    for response in (first, second):
        assert response.status == 200
        # {"token", "expires_in"}, plus the newest message position (recovery).
        assert set(response.body) == {"token", "expires_in", "position"}
        assert isinstance(response.body["position"], str)
        assert response.body["expires_in"] == 30
        assert len(response.body["token"]) >= 43  # 32 random bytes, base64url
        assert URL_SAFE.match(response.body["token"])
    assert first.body["token"] != second.body["token"]


@pytest.mark.parametrize("settings_overrides", [{"socket_token_ttl_seconds": 7}])
@pytest.mark.gen_test
async def test_expires_in_follows_socket_token_ttl_seconds(api, db, settings_overrides):
    user = await api.new_user()
    response = await api.request("GET", SOCKET_TOKEN, token=user.token)
    assert response.body["expires_in"] == 7
    stored = await db["socket_tokens"].find_one({"_id": sha256(response.body["token"])})
    remaining = stored["expires_at"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=5) < remaining <= dt.timedelta(seconds=7)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.gen_test
async def test_issuing_requires_a_valid_jwt(api, db, method):
    missing = await api.request(method, SOCKET_TOKEN)
    assert missing.status == 401
    assert missing.error_code == "authentication_required"
    forged = await api.request(method, SOCKET_TOKEN, token="not.a.jwt")
    assert forged.status == 401
    assert forged.error_code == "invalid_token"
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_the_ttl_indexes_exist_with_expire_after_seconds(app, db):
    for name in TTL_COLLECTIONS:
        indexes = await db[name].index_information()
        ttl = [spec for spec in indexes.values() if "expireAfterSeconds" in spec]
        assert len(ttl) == 1, (name, indexes)
        assert ttl[0]["key"] == [("expires_at", 1)]
        assert ttl[0]["expireAfterSeconds"] == 0


@pytest.mark.gen_test
async def test_only_the_sha256_of_the_token_is_stored_with_a_user_snapshot(api, db, settings):
    user = await api.new_user()
    token = await api.socket_token(user)

    documents = await all_documents(db)
    assert documents, "the scan found nothing: it would prove nothing"
    for document in documents:
        assert token not in repr(document)

    stored = await db["socket_tokens"].find_one({"_id": sha256(token)})
    assert stored is not None
    jti = jwt.decode(user.token, settings.jwt_secret, algorithms=["HS256"])["jti"]
    assert stored["user"] == {"_id": user.id, "username": user.username, "groups": []}
    assert stored["jti"] == jti
    # ``sep``: the session epoch of the JWT (ending every session of the user voids it).
    assert set(stored) == {"_id", "user", "jti", "exp", "sep", "expires_at"}
    # The JWT's expiry, which a socket opened with this token must not outlive.
    assert stored["exp"] == jwt.decode(user.token, settings.jwt_secret, algorithms=["HS256"])["exp"]


@pytest.mark.gen_test
async def test_a_token_is_consumed_once(api, registry):
    user = await api.new_user()
    token = await api.socket_token(user)
    store: SocketTokenStore = registry["transomNonce"]
    claimed = await store.consume(token)
    assert claimed is not None
    assert claimed["user"]["_id"] == user.id
    assert await store.consume(token) is None


@pytest.mark.gen_test
async def test_an_unknown_well_formed_token_is_refused(app, registry):
    store: SocketTokenStore = registry["transomNonce"]
    assert await store.consume("A" * 43) is None


@pytest.mark.gen_test
async def test_of_50_concurrent_consumers_of_one_token_exactly_one_wins(api, registry, db):
    user = await api.new_user()
    token = await api.socket_token(user)
    store: SocketTokenStore = registry["transomNonce"]
    # Open enough pooled connections first, so the 50 queries really run side by side
    # (on a cold pool a check-then-delete would pass by luck).
    await asyncio.gather(*(db.command("ping") for _ in range(50)))
    results = await asyncio.gather(*(store.consume(token) for _ in range(50)))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert winners[0]["user"]["_id"] == user.id
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_handshakes_arriving_together_each_get_their_own_grant_once(api, registry, db):
    # Consumed in one event-loop pass, these share one find and one delete_many: each
    # caller must still get its own user's grant, a repeated token must win once, and
    # an unknown token must get nothing.
    users = [await api.new_user() for _ in range(3)]
    owners = {await api.socket_token(user): user for user in users for _ in range(4)}
    tokens = [*owners, next(iter(owners)), "A" * 43]
    store: SocketTokenStore = registry["transomNonce"]
    grants = await asyncio.gather(*(store.consume(token) for token in tokens))
    for token, grant in zip(tokens[: len(owners)], grants, strict=False):
        assert grant is not None and grant["user"]["_id"] == owners[token].id
        assert set(grant) == {"user", "jti", "exp", "sep", CHECKED_AT}
        assert isinstance(grant[CHECKED_AT], float)
    assert grants[len(owners)] is None  # the repeat of the first token
    assert grants[-1] is None
    assert await db["socket_tokens"].count_documents({}) == 0
    assert await asyncio.gather(*(store.consume(token) for token in owners)) == [None] * 12


@pytest.mark.gen_test
async def test_two_processes_consuming_the_same_tokens_grant_each_at_most_once(api, registry, db):
    # Two stores on one database stand for two workers: their batches race for the
    # same tokens, and no token may be granted by both.
    user = await api.new_user()
    principal = await principal_of(registry, user.token)
    workers = [SocketTokenStore(db, ttl_seconds=30) for _ in range(2)]
    tokens = await issued(workers[0], principal, 20)
    await asyncio.gather(*(db.command("ping") for _ in range(8)))  # a warm pool
    results = await asyncio.gather(
        *(worker.consume(token) for token in tokens for worker in workers)
    )
    for index in range(len(tokens)):
        pair = results[2 * index : 2 * index + 2]
        assert sum(grant is not None for grant in pair) <= 1, tokens[index]
    assert all(grant["user"]["_id"] == user.id for grant in results if grant is not None)
    assert await db["socket_tokens"].count_documents({}) == 0


async def batch_racing_another_process(
    api: Any,
    registry: Any,
    db: Any,
    monkeypatch: Any,
    before: str,
    race: Any,
    *,
    sole_consumer: bool = False,
) -> list[Any]:
    """The grants for three tokens consumed in one batch; ``race(tokens)`` runs just
    before the batch's ``before`` query and stands for another process (a store of its
    own on the same database)."""
    principal = await new_principal(api, registry)
    store = SocketTokenStore(db, ttl_seconds=30, sole_consumer=sole_consumer)
    tokens = await issued(store, principal, 3)
    collection = db["socket_tokens"]
    monkeypatch.setattr(store, "_collection", collection)
    query = getattr(collection, before)

    async def raced(*args: Any, **kwargs: Any) -> Any:
        await race(tokens)
        return await query(*args, **kwargs)

    async def raced_cursor(*args: Any, **kwargs: Any) -> Any:  # find: an async iterator
        await race(tokens)
        async for document in query(*args, **kwargs):
            yield document

    monkeypatch.setattr(collection, before, raced_cursor if before == "find" else raced)
    grants = await asyncio.gather(*(store.consume(token) for token in tokens))
    monkeypatch.undo()
    return grants


@pytest.mark.gen_test
async def test_a_token_another_process_consumes_first_is_left_out_of_a_batch(
    api, registry, db, monkeypatch
):
    other = SocketTokenStore(db, ttl_seconds=30)
    taken: list[Any] = []

    async def consume_the_second(tokens: list[str]) -> None:
        taken.append(await other.consume(tokens[1]))

    grants = await batch_racing_another_process(
        api, registry, db, monkeypatch, "update_many", consume_the_second
    )
    assert taken[0] is not None
    assert [grant is not None for grant in grants] == [True, False, True]
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_tokens_a_batch_has_claimed_are_granted_to_no_one_else(
    api, registry, db, monkeypatch
):
    # After the batch's claim, before its delete, another process tries the same tokens:
    # one alone, then all three together (its own batch).
    other = SocketTokenStore(db, ttl_seconds=30)
    attempts: list[Any] = []

    async def try_them_all(tokens: list[str]) -> None:
        attempts.append(await other.consume(tokens[0]))
        attempts.extend(await asyncio.gather(*(other.consume(token) for token in tokens)))

    grants = await batch_racing_another_process(
        api, registry, db, monkeypatch, "delete_many", try_them_all
    )
    assert attempts == [None] * 4
    assert all(grant is not None for grant in grants)
    assert await db["socket_tokens"].count_documents({}) == 0


def count_finds(monkeypatch: Any, store: SocketTokenStore) -> list[str]:
    """Record every ``find`` the store sends to its collection from now on."""
    return count_queries(monkeypatch, store, ("find",))


@pytest.mark.gen_test
async def test_a_batch_of_tokens_issued_here_is_granted_without_reading_them_back(
    api, registry, db, monkeypatch
):
    # The process remembers what it issued: claim and delete, no read in between.
    users = [await api.new_user() for _ in range(3)]
    principals = [await principal_of(registry, user.token) for user in users]
    store = SocketTokenStore(db, ttl_seconds=30)
    tokens = [(await store.issue(principal)).token for principal in principals]
    finds = count_finds(monkeypatch, store)
    grants = await asyncio.gather(*(store.consume(token) for token in tokens))
    assert finds == []
    for grant, principal in zip(grants, principals, strict=True):
        assert grant == grant_of(principal, issued_here=True)
    assert await db["socket_tokens"].count_documents({}) == 0
    assert await asyncio.gather(*(store.consume(token) for token in tokens)) == [None] * 3


@pytest.mark.gen_test
async def test_a_batch_with_tokens_voided_or_issued_elsewhere_reads_the_grants_back(
    api, registry, db, monkeypatch
):
    # A token voided (as by logout) since it was issued here, then another worker's
    # token: either way the grants come from the database, and only live tokens get one
    # (with the check time of the request only for the one this process issued).
    principal = await new_principal(api, registry)
    grant, grant_here = grant_of(principal), grant_of(principal, issued_here=True)
    here, elsewhere = SocketTokenStore(db, ttl_seconds=30), SocketTokenStore(db, ttl_seconds=30)
    finds = count_finds(monkeypatch, here)
    voided, live = await issued(here, principal, 2)
    await db["socket_tokens"].delete_one({"_id": sha256(voided)})
    assert await asyncio.gather(here.consume(voided), here.consume(live)) == [None, grant_here]
    assert len(finds) == 1
    tokens = [(await here.issue(principal)).token, (await elsewhere.issue(principal)).token]
    consumed = await asyncio.gather(*(here.consume(token) for token in tokens))
    assert consumed == [grant_here, grant]
    assert len(finds) == 2
    assert await db["socket_tokens"].count_documents({}) == 0


def sole_store(db: Any) -> SocketTokenStore:
    """The store of an app with its sockets in one process (no REDIS_URL)."""
    return SocketTokenStore(db, ttl_seconds=30, sole_consumer=True)


def count_queries(
    monkeypatch: Any,
    store: SocketTokenStore,
    names: tuple[str, ...] = ("find", "update_many", "delete_many", "find_one_and_delete"),
) -> list[str]:
    """Record the name of each of these queries the store sends to its collection from
    now on."""
    collection = store._collection
    sent: list[str] = []
    monkeypatch.setattr(store, "_collection", collection)
    for name in names:
        query = getattr(collection, name)

        def counted(*args: Any, _query: Any = query, _name: str = name, **kwargs: Any) -> Any:
            sent.append(_name)
            return _query(*args, **kwargs)

        monkeypatch.setattr(collection, name, counted)
    return sent


@pytest.mark.gen_test
async def test_the_only_consumer_deletes_a_batch_without_a_claim(api, registry, db, monkeypatch):
    # A batch of tokens all issued here costs one delete: their grants are remembered.
    # One with a token issued elsewhere is read first. Every token once, its own.
    principal = await new_principal(api, registry)
    store = sole_store(db)
    elsewhere = SocketTokenStore(db, ttl_seconds=30)
    tokens = await issued(store, principal, 4)
    tokens.append((await elsewhere.issue(principal)).token)  # an earlier run's, say
    sent = count_queries(monkeypatch, store)
    assert await store.consume(tokens[0]) == grant_of(principal, issued_here=True)
    assert sent == ["delete_many"]
    assert (
        await asyncio.gather(store.consume(tokens[1]), store.consume(tokens[2]))
        == [grant_of(principal, issued_here=True)] * 2
    )
    assert sent == ["delete_many"] * 2
    grants = await asyncio.gather(*(store.consume(token) for token in [*tokens[3:], tokens[3]]))
    assert grants == [grant_of(principal, issued_here=True), grant_of(principal), None]
    assert sent == ["delete_many"] * 2 + ["find", "delete_many"]
    assert await db["socket_tokens"].count_documents({}) == 0
    assert await asyncio.gather(*(store.consume(token) for token in tokens)) == [None] * 5


async def consume_while_the_ttl_monitor_takes(
    store: SocketTokenStore, db: Any, monkeypatch: Any, tokens: list[str], taken: str
) -> list[Any]:
    """The grants of ``tokens``, consumed in one batch, while the TTL monitor removes
    ``taken`` just before the batch's delete."""
    collection = store._collection
    monkeypatch.setattr(store, "_collection", collection)
    delete_many = collection.delete_many

    async def after_the_ttl_monitor(*args: Any, **kwargs: Any) -> Any:
        await db["socket_tokens"].delete_one({"_id": sha256(taken)})
        return await delete_many(*args, **kwargs)

    monkeypatch.setattr(collection, "delete_many", after_the_ttl_monitor)
    return await asyncio.gather(*(store.consume(token) for token in tokens))


@pytest.mark.gen_test
async def test_a_token_the_ttl_monitor_takes_between_read_and_delete_is_refused_alone(
    api, registry, db, monkeypatch
):
    # Tokens this process does not remember are read. The second is about to expire
    # when the batch reads it, and gone before the batch's delete, as the TTL monitor
    # removes it: it alone is refused.
    principal = await new_principal(api, registry)
    store = SocketTokenStore(db, ttl_seconds=30, remember_at_most=0, sole_consumer=True)
    tokens = await issued(store, principal, 3)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    await db["socket_tokens"].update_one({"_id": sha256(tokens[1])}, {"$set": {"expires_at": soon}})
    grants = await consume_while_the_ttl_monitor_takes(store, db, monkeypatch, tokens, tokens[1])
    assert [grant is not None for grant in grants] == [True, False, True]
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.gen_test(timeout=30)
async def test_a_remembered_token_the_ttl_monitor_takes_before_the_delete_is_refused_alone(
    api, registry, db, monkeypatch
):
    # Tokens issued here are deleted without a read. The one issued first is within
    # CLOCK_SKEW_SECONDS of its expiry and the TTL monitor takes it before the delete:
    # the delete removes one fewer, which only that token's expiry explains.
    principal = await new_principal(api, registry)
    store = SocketTokenStore(db, ttl_seconds=10, sole_consumer=True)
    ending = (await store.issue(principal)).token
    await asyncio.sleep(10 - nonces_module.CLOCK_SKEW_SECONDS + 0.5)
    tokens = [(await store.issue(principal)).token, ending, (await store.issue(principal)).token]
    sent = count_queries(monkeypatch, store)
    grants = await consume_while_the_ttl_monitor_takes(store, db, monkeypatch, tokens, ending)
    assert [grant is not None for grant in grants] == [True, False, True]
    assert sent == ["delete_many"]
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.parametrize("voiding", ["logout", "end of the user's other sessions"])
@pytest.mark.gen_test
async def test_a_token_voided_after_it_was_issued_here_is_refused_alone(
    api, registry, db, monkeypatch, voiding
):
    # A voided token's remembered grant is forgotten with it: its batch reads, finds it
    # gone and refuses it alone, where a delete without a read would have removed one
    # fewer than asked and refused the whole batch.
    principal, other = await new_principal(api, registry), await new_principal(api, registry)
    store = sole_store(db)
    voided, kept = (await store.issue(principal)).token, (await store.issue(other)).token
    if voiding == "logout":
        await store.discard_for_jwt(principal.jti)
    else:
        await store.discard_for_user(principal.user_id, keep_jti="another-session")
    sent = count_queries(monkeypatch, store)
    grants = await asyncio.gather(store.consume(voided), store.consume(kept))
    assert grants == [None, grant_of(other, issued_here=True)]
    assert sent == ["find", "delete_many"]


@pytest.mark.gen_test
async def test_the_only_consumer_grants_nothing_it_cannot_tell_it_took(
    api, registry, db, monkeypatch, caplog
):
    # Two processes without REDIS_URL (which the app does not support): the other takes
    # a live token between the batch's read and its delete. No token is granted twice:
    # the batch grants none, and the log says why.
    other = SocketTokenStore(db, ttl_seconds=30)
    taken: list[Any] = []

    async def consume_the_second(tokens: list[str]) -> None:
        taken.append(await other.consume(tokens[1]))

    grants = await batch_racing_another_process(
        api, registry, db, monkeypatch, "delete_many", consume_the_second, sole_consumer=True
    )
    assert taken[0] is not None
    assert grants == [None] * 3
    assert "without REDIS_URL the app must run as one process" in caplog.text


@pytest.mark.gen_test
async def test_the_only_consumer_voids_no_token_between_a_batchs_read_and_delete(
    api, registry, db, monkeypatch
):
    # A logout's voiding that comes while a batch is between its read and its delete
    # waits for the delete: the batch's tokens are granted once, the others voided.
    principal = await new_principal(api, registry)
    store = sole_store(db)
    consumed, unused = await issued(store, principal, 2)
    collection = store._collection
    monkeypatch.setattr(store, "_collection", collection)
    read, go_on = asyncio.Event(), asyncio.Event()
    delete_many = collection.delete_many
    order: list[str] = []

    async def held_delete(*args: Any, **kwargs: Any) -> Any:
        if not read.is_set():  # the batch's delete: held once
            read.set()
            await go_on.wait()
        order.append("batch" if "_id" in args[0] else "voiding")
        return await delete_many(*args, **kwargs)

    monkeypatch.setattr(collection, "delete_many", held_delete)
    handshake = asyncio.ensure_future(store.consume(consumed))
    await asyncio.wait_for(read.wait(), 10)
    voiding = asyncio.ensure_future(store.discard_for_jwt(principal.jti))
    await asyncio.sleep(0.1)
    assert not voiding.done()  # it waits for the batch
    go_on.set()
    assert await handshake == grant_of(principal, issued_here=True)
    await voiding
    assert order == ["batch", "voiding"]
    assert await store.consume(unused) is None
    assert await db["socket_tokens"].count_documents({}) == 0


@pytest.mark.gen_test
async def test_the_grants_a_process_remembers_are_bounded(api, registry, db):
    principal = await new_principal(api, registry)
    store = SocketTokenStore(db, ttl_seconds=30, remember_at_most=2)
    tokens = await issued(store, principal, 5)
    assert list(store._issued) == [sha256(token) for token in tokens[-2:]]
    # The forgotten ones are read back from the database.
    grants = await asyncio.gather(*(store.consume(token) for token in tokens))
    assert all(grant is not None and grant["jti"] == principal.jti for grant in grants)


@pytest.mark.gen_test(timeout=15)
async def test_an_expired_token_is_refused_before_any_ttl_sweep(api, registry):
    # A database of its own without the TTL index: nothing can sweep the token away,
    # so only the expiry check in the consuming query can refuse it.
    client = registry[keys.MONGO_CLIENT]
    name = f"nottl_{uuid.uuid4().hex[:12]}"
    store = SocketTokenStore(client[name], ttl_seconds=1)
    principal = await new_principal(api, registry)
    try:
        expired = (await store.issue(principal)).token
        live = (await store.issue(principal)).token
        await asyncio.sleep(1.2)
        assert await store.consume(expired) is None
        assert await client[name]["socket_tokens"].find_one({"_id": sha256(expired)})
        # The same store does hand out a live token (the refusal is about time).
        fresh = SocketTokenStore(client[name], ttl_seconds=30)
        assert await fresh.consume((await fresh.issue(principal)).token) is not None
        assert await store.consume(live) is None
    finally:
        await client.drop_database(name)


NOT_TOKENS: list[Any] = [
    {"$ne": None},
    {"$gt": ""},
    {"$where": "1"},
    ["token"],
    123,
    None,
    b"A" * 43,
    "",
    "A" * 42,
    "A" * 44,
    "A" * 42 + "=",
]


@pytest.mark.gen_test
async def test_a_token_that_is_not_a_well_formed_string_is_refused_without_a_query(app):
    # A real client to a port where nothing listens: any query would raise.
    dead = database.connect(f"mongodb://127.0.0.1:{closed_port()}/", timeout_ms=200)
    try:
        store = SocketTokenStore(dead["nowhere"], ttl_seconds=30)
        for bad in NOT_TOKENS:
            assert await store.consume(bad) is None, bad
        with pytest.raises(PyMongoError):
            await store.consume("A" * 43)  # a well-formed token does reach the database
    finally:
        await database.close(dead)


@pytest.mark.gen_test
async def test_operator_objects_do_not_consume_a_real_token(api, registry):
    user = await api.new_user()
    token = await api.socket_token(user)
    store: SocketTokenStore = registry["transomNonce"]
    for bad in ({"$ne": None}, {"$exists": True}, {"$regex": ".*"}, [token]):
        assert await store.consume(bad) is None
    assert await store.consume(token) is not None


@pytest.mark.gen_test
async def test_logout_voids_the_unused_socket_tokens_of_that_jwt(api, registry, db):
    user = await api.new_user()
    other_session = (await api.login(user.username)).body["token"]
    token = await api.socket_token(user)
    kept = (await api.request("GET", SOCKET_TOKEN, token=other_session)).body["token"]
    assert (await api.request("POST", "/api/v1/user/logout", token=user.token)).status == 200
    store: SocketTokenStore = registry["transomNonce"]
    assert await store.consume(token) is None
    assert await store.consume(kept) is not None


@pytest.mark.gen_test
async def test_concurrent_requests_of_live_and_revoked_jwts_each_get_their_own_answer(api, db):
    # Issued together, these share revocation checks and inserts (batching.Batcher):
    # each request must still get the answer for its own JWT.
    live = [await api.new_user() for _ in range(3)]
    revoked = [await api.new_user() for _ in range(3)]
    for user in revoked:
        assert (await api.request("POST", "/api/v1/user/logout", token=user.token)).status == 200
    users = [user for pair in zip(live, revoked, strict=True) for user in pair] * 4
    answers = await asyncio.gather(
        *(api.request("GET", SOCKET_TOKEN, token=user.token) for user in users)
    )
    for user, answer in zip(users, answers, strict=True):
        if user in live:
            assert answer.status == 200, answer.body
        else:
            assert answer.status == 401 and answer.error_code == "invalid_token", answer.body
    issued = [answer.body["token"] for answer in answers if answer.status == 200]
    assert len(issued) == len(set(issued)) == 12
    stored = await db["socket_tokens"].count_documents(
        {"_id": {"$in": [hashlib.sha256(token.encode()).hexdigest() for token in issued]}}
    )
    assert stored == 12


@pytest.mark.gen_test
async def test_a_token_the_database_refuses_fails_only_its_own_request(
    api, registry, db, monkeypatch
):
    # Random tokens never collide; force a collision inside one batch to check that the
    # database's refusal of one document reaches that caller only.
    principal = await new_principal(api, registry)
    store: SocketTokenStore = registry["transomNonce"]
    drawn = iter(["A" * 43, "A" * 43, "B" * 43])
    monkeypatch.setattr(nonces_module.secrets, "token_urlsafe", lambda _size: next(drawn))
    answers = await asyncio.gather(
        *(store.issue(principal) for _ in range(3)), return_exceptions=True
    )
    assert [a.token for a in answers if not isinstance(a, BaseException)] == ["A" * 43, "B" * 43]
    assert isinstance(answers[1], PyMongoError)
    assert await store.consume("A" * 43) is not None
    assert await store.consume("B" * 43) is not None
