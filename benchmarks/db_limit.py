"""The database's own round-trip limit for the queries behind a token and a handshake.

Runs the same queries as the app, straight from the driver, against the same
database set-up as the benchmarked app: the embedded database (SecantusDB, in
memory, in this process, like ``APP_ENV=test``) started by the generated
package's own ``start_embedded_database``, the client from its ``db.connect`` and
the indexes from its ``app.all_indexes``, the garbage collector tuned by its
``server.tune_garbage_collector`` and the event loop its settings choose
(``EVENT_LOOP``), as the app's server does. With ``--uri`` it uses
that database instead.

What the benchmark's clients cost the app's database (engine 0.3.2, one process,
no REDIS_URL): each logs in, then asks for a socket token and connects with it. The
login counts as the JWT's revocation check, so the socket-token request reads no
revocation, and the app remembers the grants of the tokens it issued, so a batch of
their handshakes reads nothing either (auth/tokens.py, auth/nonces.py):

- token: ``socket_tokens.insert_one({...})`` (the nonce), as
  ``POST /api/v1/user/sockettoken`` does;
- handshake: ``socket_tokens.delete_many({_id: {$in: [hash]}, expires_at: {$gt:
  now}})``, on tokens inserted just before (not timed), as a lone Socket.IO handshake
  does (``SocketTokenStore._delete_remembered``);
- connect: the two, one after the other, per connection (token + handshake);
- token_batched: what the app sends when ``--concurrency`` token requests arrive
  together (its ``batching.Batcher``): one ``socket_tokens.insert_many`` for the whole
  batch, batch after batch;
- connect_batched: the same for ``--concurrency`` connections at once, token half
  then handshake half: the ``insert_many``, then one ``delete_many`` for the whole
  batch (what the app's handshakes send together).

``--concurrency`` tasks run the operations for ``--duration`` seconds (token,
connect) or until ``--handshakes`` tokens are consumed. Prints one JSON object.

Usage: python benchmarks/db_limit.py [--concurrency 16] [--duration 5] [--handshakes 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import importlib
import json
import os
import secrets
import time
from typing import Any

PACKAGE = os.environ.get("BENCH_APP_PACKAGE", "transom_app")


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)

    def pick(p: float) -> float | None:
        if not ordered:
            return None
        rank = min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))
        return round(ordered[int(rank)], 3)

    return {"n": len(ordered), "p50": pick(50), "p99": pick(99)}


def nonce_doc(user_id: str, jti: str, ttl: int) -> dict[str, Any]:
    """A socket-token document as the app stores it (the hash of a fresh token as _id)."""
    token = secrets.token_urlsafe(32)
    return {
        "_id": hashlib.sha256(token.encode("ascii")).hexdigest(),
        "user": {"_id": user_id, "username": "bench", "groups": []},
        "jti": jti,
        "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl),
    }


async def measure(args: argparse.Namespace, uri: str) -> dict[str, Any]:
    db = importlib.import_module("transom_socketio.db")
    engine = importlib.import_module("transom_socketio.app")
    app_db = importlib.import_module(f"{PACKAGE}.db")
    models = importlib.import_module(f"{PACKAGE}.models")
    client = db.connect(uri, 5000)
    database = client[f"bench_db_limit_{secrets.token_hex(4)}"]
    indexes = [*engine.LIBRARY_INDEXES, *app_db.INDEXES, *models.INDEXES]
    await db.ensure_indexes(database, indexes)
    # The garbage collector set up as the app's server sets it up once started.
    importlib.import_module("transom_socketio.server").tune_garbage_collector()
    nonces = database["socket_tokens"]
    user_id = "0" * 24
    jtis = [secrets.token_urlsafe(16) for _ in range(args.concurrency)]

    async def token_op(worker: int) -> str:
        """The insert of one token; returns the token's hash."""
        doc = nonce_doc(user_id, jtis[worker], 600)
        await nonces.insert_one(doc)
        return doc["_id"]

    async def consume_batch_op(hashes: list[str]) -> int:
        """The app's handshake query for a batch (of one, or more) of tokens it issued:
        the live ones deleted; returns how many were consumed."""
        unexpired = {"expires_at": {"$gt": dt.datetime.now(dt.UTC)}}
        deleted = await nonces.delete_many({"_id": {"$in": hashes}, **unexpired})
        return deleted.deleted_count if deleted.deleted_count == len(hashes) else 0

    async def consume_op(token_hash: str) -> bool:
        """A lone handshake's queries: whether it consumed the token."""
        return await consume_batch_op([token_hash]) == 1

    async def timed_loop(worker: int, until: float, latencies: list[float]) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await token_op(worker)
            latencies.append((time.perf_counter() - started) * 1000)

    # Warm-up, then the timed token loop.
    await asyncio.gather(*(token_op(w) for w in range(args.concurrency) for _ in range(20)))
    token_latencies: list[float] = []
    started = time.perf_counter()
    until = started + args.duration
    await asyncio.gather(*(timed_loop(w, until, token_latencies) for w in range(args.concurrency)))
    token_seconds = time.perf_counter() - started

    # Handshakes: consume tokens inserted just before (not timed), in batches, so the
    # collection stays as small as in the app, where a token lives a few milliseconds.
    # (SecantusDB's scans slow down as the collection grows.)
    handshake_latencies: list[float] = []
    consumed = 0
    batch = args.concurrency * 4
    handshake_seconds = 0.0

    async def consume(token_hash: str) -> None:
        nonlocal consumed
        t0 = time.perf_counter()
        taken = await consume_op(token_hash)
        handshake_latencies.append((time.perf_counter() - t0) * 1000)
        if taken:
            consumed += 1

    async def consume_loop(hashes: list[str]) -> None:
        while hashes:
            await consume(hashes.pop())

    await nonces.delete_many({})  # the token phase's leftovers
    for _ in range(max(1, args.handshakes // batch)):
        docs = [nonce_doc(user_id, jtis[i % args.concurrency], 600) for i in range(batch)]
        await nonces.insert_many(docs)
        hashes = [doc["_id"] for doc in docs]
        started = time.perf_counter()
        await asyncio.gather(*(consume_loop(hashes) for _ in range(args.concurrency)))
        handshake_seconds += time.perf_counter() - started

    # Connect: both, per connection, as the app does them (token, then handshake).
    connect_latencies: list[float] = []

    async def connect_loop(worker: int, until: float) -> None:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            await consume_op(await token_op(worker))
            connect_latencies.append((time.perf_counter() - t0) * 1000)

    gc.collect()
    rss_before = rss_kb()
    started = time.perf_counter()
    until = started + args.duration
    await asyncio.gather(*(connect_loop(w, until) for w in range(args.concurrency)))
    connect_seconds = time.perf_counter() - started
    gc.collect()
    rss_growth = rss_kb() - rss_before

    async def token_batch_op() -> list[str]:
        """One batch of --concurrency tokens as the app sends it; returns their hashes."""
        docs = [nonce_doc(user_id, jti, 600) for jti in jtis]
        await nonces.insert_many(docs, ordered=False)
        return [doc["_id"] for doc in docs]

    async def batched_loop(op: Any) -> tuple[int, float, list[float]]:
        """Runs ``op`` (one batch of --concurrency) back to back for --duration seconds."""
        latencies: list[float] = []
        started = time.perf_counter()
        until = started + args.duration
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            await op()
            latencies.append((time.perf_counter() - t0) * 1000)
        return len(latencies) * len(jtis), time.perf_counter() - started, latencies

    # Batched connections, --concurrency at a time: every token inserted is consumed.
    async def connect_batch_op() -> None:
        if await consume_batch_op(await token_batch_op()) != len(jtis):
            raise RuntimeError("a batched handshake did not consume its tokens")

    connects, connects_seconds, connects_latencies = await batched_loop(connect_batch_op)

    # Batched tokens. Last, because the many tokens it leaves would slow the handshakes'
    # collection scans down.
    batched_tokens, batched_seconds, batched_latencies = await batched_loop(token_batch_op)

    await client.drop_database(database.name)
    await db.close(client)
    return {
        "concurrency": args.concurrency,
        "token": {
            "queries": "socket_tokens.insert_one",
            "ops": len(token_latencies),
            "seconds": round(token_seconds, 3),
            "per_s": round(len(token_latencies) / token_seconds, 3),
            "latency_ms": summary(token_latencies),
        },
        "token_batched": {
            "queries": f"socket_tokens.insert_many, {args.concurrency} tokens per batch",
            "ops": batched_tokens,
            "seconds": round(batched_seconds, 3),
            "per_s": round(batched_tokens / batched_seconds, 3),
            "latency_ms": summary(batched_latencies),
        },
        "connect_batched": {
            "queries": f"token_batched, then socket_tokens.delete_many $in, "
            f"{args.concurrency} connections per batch",
            "ops": connects,
            "seconds": round(connects_seconds, 3),
            "per_s": round(connects / connects_seconds, 3),
            "latency_ms": summary(connects_latencies),
        },
        "handshake": {
            "queries": "socket_tokens.delete_many $in",
            "ops": len(handshake_latencies),
            "consumed": consumed,
            "seconds": round(handshake_seconds, 3),
            "per_s": round(len(handshake_latencies) / handshake_seconds, 3),
            "latency_ms": summary(handshake_latencies),
        },
        "connect": {
            "queries": "socket_tokens.insert_one + socket_tokens.delete_many $in",
            "ops": len(connect_latencies),
            "seconds": round(connect_seconds, 3),
            "per_s": round(len(connect_latencies) / connect_seconds, 3),
            "latency_ms": summary(connect_latencies),
            # How much this process (driver + embedded database) grew per connect's
            # queries: a share of the app's RSS per connection that is the database's.
            "rss_kb_per_op": round(rss_growth / max(1, len(connect_latencies)), 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--handshakes", type=int, default=1024)
    parser.add_argument("--uri", help="a MongoDB URI instead of the embedded database")
    args = parser.parse_args()
    embedded = None
    uri = args.uri
    if uri is None:
        embedded_db = importlib.import_module("transom_socketio.embedded_db")
        embedded = embedded_db.start_embedded_database(embedded_db.IN_MEMORY)
        # The URI the app itself uses for the embedded database (same client options).
        uri = embedded_db.client_uri(embedded)
    # The event loop the app's own settings choose (EVENT_LOOP, read like the app reads
    # it), so the driver costs here what it costs in the app.
    settings = importlib.import_module(f"{PACKAGE}.settings").load_settings()
    server = importlib.import_module("transom_socketio.server")
    try:
        with asyncio.Runner(loop_factory=server.event_loop_factory(settings.event_loop)) as runner:
            result = runner.run(measure(args, uri))
    finally:
        if embedded is not None:
            embedded.stop()
    result["database"] = (
        "external (--uri)" if args.uri else "embedded SecantusDB, in memory, in-process"
    )
    result["event_loop"] = settings.event_loop
    print(json.dumps(result))


if __name__ == "__main__":
    main()
