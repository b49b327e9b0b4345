"""The generated app, served exactly as ``python -m <slug>`` serves it, plus /bench routes.

The benchmark must measure the app's own code path, so this module changes nothing
in it: it wraps ``<slug>.app.make_app`` to add four benchmark-only routes to the
Application that ``make_app`` returns, then runs the package's own entry point
(``<slug>.__main__.main``: settings from the environment, logging, embedded
database, ``server.serve``). Whatever the app does at start-up (GC tuning, event
loop policy, the realtime fast path...) is therefore what is measured.

Routes (the same as benchmarks/node_server.js):

- ``POST /bench/broadcast {count, size, run}``: ``count`` times
  ``await registry['transomMsgClient'].emitToEveryone("bench", payload)``;
- ``POST /bench/users {count, size, run, users}``: ``count`` times
  ``await registry['transomMsgClient'].emitToUsers(users, "bench", payload)``;
- ``POST /bench/channel {count, size, run, channels}``: ``count`` times, for each
  channel, ``await registry['transomMsgClient'].emitToChannel(channel, "bench", payload)``
  (the sockets subscribed with the app's own ``subscribe`` event, channels.py);
- ``GET /bench/stats[?gc=1]``: ``{rss_kb, cpu_s, sockets, ...}`` (RSS from
  /proc/self/status; ``gc=1`` runs a full collection first).

``payload`` is ``{run, seq, t, pad}``: ``t`` is the send time in ms since the epoch,
taken just before each emit, ``seq`` counts from 0 and ``pad`` brings the packet
(``42["bench",{...}]``) to about ``size`` bytes.

One exception, for an ablation only: with ``BENCH_NO_DATABASE=1`` the socket-token
store and the JWT revocation check keep their data in a dict instead of the
database (everything else, signup and login included, still uses it). A token and
a handshake then cost only the app's own work, which tells how much of their cost is
the app's and how much the database's (``run.py --server-env BENCH_NO_DATABASE=1``).

Usage: ``APP_ENV=test PORT=0 python benchmarks/python_server.py`` in a venv where
the generated project is installed (BENCH_APP_PACKAGE names its package, default
``transom_app``). It logs ``listening on http://127.0.0.1:PORT`` like the app.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import secrets
import sys
import time
from typing import Any

import tornado.web

PACKAGE = os.environ.get("BENCH_APP_PACKAGE", "transom_app")
CHANNEL = "bench"
EVERYONE = "everyone"  # the room emitToEveryone targets (transom_socketio/realtime/rooms.py)
NAMESPACE = "/"


def now_ms() -> float:
    return time.time() * 1000.0


def rss_kb() -> int | None:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_seconds() -> float:
    """User + system CPU time of the whole process (every thread), in seconds."""
    return time.process_time()


def pad_for(size: int, run: str) -> str:
    """Padding that brings ``42["bench",{run, seq, t, pad}]`` to about ``size`` bytes."""
    probe = json.dumps({"run": run, "seq": 0, "t": now_ms(), "pad": ""}, separators=(",", ":"))
    return "x" * max(0, size - len(f'42["{CHANNEL}",{probe}]'))


class _BenchHandler(tornado.web.RequestHandler):
    def initialize(self) -> None:
        self.registry = self.application.settings["registry"]

    def check_xsrf_cookie(self) -> None:
        return None

    def body(self) -> dict[str, Any]:
        value = json.loads(self.request.body or b"{}")
        if not isinstance(value, dict):
            raise tornado.web.HTTPError(400)
        return value

    def reply(self, payload: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(payload))


class BroadcastHandler(_BenchHandler):
    """``count`` x ``emitToEveryone`` (or ``emitToUsers``) through the app's message client."""

    async def post(self) -> None:
        body = self.body()
        count = int(body.get("count", 0))
        run = str(body.get("run", ""))
        pad = pad_for(int(body.get("size", 120)), run)
        users = body.get("users") if self.request.path.endswith("/users") else None
        if self.request.path.endswith("/users") and not isinstance(users, list):
            raise tornado.web.HTTPError(400)
        client = self.registry["transomMsgClient"]
        started, cpu0 = now_ms(), cpu_seconds()
        if users is None:
            for seq in range(count):
                await client.emitToEveryone(
                    CHANNEL, {"run": run, "seq": seq, "t": now_ms(), "pad": pad}
                )
        else:
            targets = [str(user) for user in users]
            for seq in range(count):
                await client.emitToUsers(
                    targets, CHANNEL, {"run": run, "seq": seq, "t": now_ms(), "pad": pad}
                )
        self.reply(
            {"sent": count, "emit_ms": now_ms() - started, "emit_cpu_s": cpu_seconds() - cpu0}
        )


class ChannelHandler(_BenchHandler):
    """``count`` x (``emitToChannel`` to each channel) through the app's message client."""

    async def post(self) -> None:
        body = self.body()
        count = int(body.get("count", 0))
        run = str(body.get("run", ""))
        pad = pad_for(int(body.get("size", 120)), run)
        channels = body.get("channels")
        if not isinstance(channels, list) or not channels:
            raise tornado.web.HTTPError(400)
        names = [str(channel) for channel in channels]
        client = self.registry["transomMsgClient"]
        started, cpu0 = now_ms(), cpu_seconds()
        for seq in range(count):
            for channel in names:
                await client.emitToChannel(
                    channel, CHANNEL, {"run": run, "seq": seq, "t": now_ms(), "pad": pad}
                )
        self.reply(
            {
                "sent": count * len(names),
                "emit_ms": now_ms() - started,
                "emit_cpu_s": cpu_seconds() - cpu0,
            }
        )


class StatsHandler(_BenchHandler):
    def get(self) -> None:
        if self.get_query_argument("gc", "0") == "1":
            gc.collect()
        sio = self.registry["socketServer"]
        sockets = sum(1 for _ in sio.manager.get_participants(NAMESPACE, EVERYONE))
        self.reply(
            {
                "server": "python",
                "pid": os.getpid(),
                "rss_kb": rss_kb(),
                "cpu_s": cpu_seconds(),
                "sockets": sockets,
                "time_ms": now_ms(),
                "gc_counts": gc.get_count(),
                "gc_frozen": gc.get_freeze_count(),
            }
        )


ROUTES = [
    (r"/bench/broadcast", BroadcastHandler),
    (r"/bench/users", BroadcastHandler),
    (r"/bench/channel", ChannelHandler),
    (r"/bench/stats", StatsHandler),
]


def without_database() -> None:
    """Socket tokens and revocations in a dict: the app's own cost of a token, a handshake."""
    nonces = importlib.import_module("transom_socketio.auth.nonces")
    revocations = importlib.import_module("transom_socketio.auth.revocations")
    live: dict[str, dict[str, Any]] = {}

    async def issue(self: Any, principal: Any) -> Any:
        token = secrets.token_urlsafe(nonces.TOKEN_BYTES)
        live[nonces.token_hash(token)] = {
            "user": principal.snapshot(),
            "jti": principal.jti,
            "exp": int(principal.expires_at.timestamp()),
            "sep": principal.session_epoch,
        }
        return nonces.IssuedSocketToken(token, self._ttl)

    async def consume(self: Any, token: object) -> dict[str, Any] | None:
        if not isinstance(token, str) or not nonces.TOKEN_SHAPE.fullmatch(token):
            return None
        return live.pop(nonces.token_hash(token), None)

    async def is_revoked(self: Any, jti: str, user_id: str | None = None, epoch: int = 0) -> bool:
        return False

    nonces.SocketTokenStore.issue = issue
    nonces.SocketTokenStore.consume = consume
    revocations.RevocationStore.is_revoked = is_revoked


def main() -> int:
    if os.environ.get("BENCH_NO_DATABASE") == "1":
        without_database()
    application = importlib.import_module(f"{PACKAGE}.app")
    settings = importlib.import_module(f"{PACKAGE}.settings")
    cli = importlib.import_module("transom_socketio.cli")
    original = application.make_app

    def make_app(settings: Any, registry: Any = None) -> tornado.web.Application:
        app = original(settings, registry)
        # Before the app's own rules, so its catch-all 404 handler does not shadow them.
        app.add_handlers(r".*", ROUTES)
        return app

    # The "listening on" line is what the benchmark waits for, whatever LOG_LEVEL is.
    logging.getLogger("transom_socketio.server").setLevel(logging.INFO)
    return int(cli.main(f"python -m {PACKAGE}", settings.load_settings, make_app))


if __name__ == "__main__":
    sys.exit(main())
