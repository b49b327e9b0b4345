"""Run the whole benchmark: the generated app against a plain Node.js socket.io 4 server.

``make bench`` bakes the default project into build/bench/, installs it in a venv
and runs this script with that venv's Python. By hand::

    python benchmarks/run.py --project build/bench/transom_app            # full: ~15 min
    python benchmarks/run.py --project build/bench/transom_app --quick    # ~2 min, 1 run
    python benchmarks/run.py --project ... --only fanout_1000 --runs 3    # one scenario
    python benchmarks/run.py --project ... --quick --only channel_1000,channels_100x10

Every scenario starts a fresh server per run (python: ``benchmarks/python_server.py``,
the app as ``python -m <slug>`` serves it, plus /bench routes; node:
``benchmarks/node_server.js``) and drives it with the one load generator,
``benchmarks/loadgen.mjs``, run the same way for both. Python and node runs are
interleaved (and their order alternates) so drift on the machine hits both. With
two or more cores the server is pinned to core 0 and the load generator to core 1
(``--no-pin`` to turn that off).

Writes ``benchmarks/results/<output>.json``, ``.png`` and ``.md`` (output: ``latest``
in full mode, ``quick`` with ``--quick``), and in full mode refreshes the results
section of benchmarks/README.md. A benchmark, not a test: no figure ever fails it;
it exits non-zero only when a run could not be carried out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
# The connect job without the frameworks (the python_lean kinds, instructions.py --lean).
LEAN_SERVER = BENCH_DIR / "lean_server.py"
LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
DATABASES = {
    "process": "SecantusDB in memory in a process of its own, pinned to the server's core "
    "(MONGODB_URI, as mongod in production)",
    "embedded": "SecantusDB in memory in the app's process (APP_ENV=test)",
}
DATABASE_LISTENING = re.compile(r"database listening on (mongodb://\S+)")
# The python server's settings, over the project's .env. Every load-generator client
# comes from 127.0.0.1, so the per-address (and per-user) rate limits are set out of
# reach: the limiters still run on every request, they just never refuse.
NO_LIMIT = "1000000000"
PYTHON_SERVER_ENV = {
    "APP_ENV": "test",  # the embedded database, in memory; cheapest password hashing
    "HOST": "127.0.0.1",
    "PORT": "0",
    "SOCKET_TOKENS_PER_MINUTE_PER_USER": NO_LIMIT,
    "SOCKET_TOKENS_PER_MINUTE_PER_ADDRESS": NO_LIMIT,
    "HANDSHAKES_PER_MINUTE_PER_ADDRESS": NO_LIMIT,
    "SOCKETIO_MAX_PENDING_PER_ADDRESS": NO_LIMIT,
    "SIGNUPS_PER_ADDRESS": "0",  # 0: no limit (the load generator signs up every user)
    # The benchmark measures sockets, not accounts: its users log in right after sign-up,
    # without following the verification link (loadgen.mjs makeUsers).
    "REQUIRE_VERIFIED_EMAIL": "false",
    # APP_ENV=test would check every API answer against its declared model, which
    # production never does (config.py, checks_responses).
    "CHECK_RESPONSES": "false",
}

# Scenario parameters. `runs` (when set) overrides the global number of runs.
FULL: dict[str, dict[str, Any]] = {
    "tokens": {"duration": 5},
    "db_limit": {"duration": 5, "handshakes": 1024},
    "fanout_100": {"clients": 100, "count": 200},
    "fanout_1000": {"clients": 1000, "count": 50},
    "users_1000": {"clients": 1000, "count": 200, "fraction": 0.1},
    # Channels: every socket subscribes to one `room:` channel (the app's `subscribe`
    # event; node: a room join), then K rounds of emitToChannel to every channel.
    "channel_1000": {"clients": 1000, "count": 50, "channels": 1},
    "channels_100x10": {"clients": 1000, "count": 50, "channels": 100},
    "idle_1000": {"clients": 1000},
    "idle_5000": {"clients": 5000, "users": 1000, "runs": 1},
    # Issue 16: fan-out at 1,000 with recovery on and off (same run), and a reconnect
    # storm (1,000 sockets drop their transport, K messages are emitted, all recover):
    # the median of 3 like every other figure, since single storms of the same code
    # took 2.3-3.8 s (each run's seconds are kept, `seconds_runs`).
    "fanout_1000_recovery": {"clients": 1000, "count": 50},
    "reconnect_storm": {"clients": 1000, "count": 100},
}
QUICK: dict[str, dict[str, Any]] = {
    "tokens": {"duration": 2},
    "db_limit": {"duration": 2, "handshakes": 256},
    "fanout_100": {"clients": 100, "count": 100},
    "fanout_1000": {"clients": 500, "count": 20},
    "users_1000": {"clients": 500, "count": 50, "fraction": 0.1},
    "channel_1000": {"clients": 500, "count": 20, "channels": 1},
    "channels_100x10": {"clients": 500, "count": 20, "channels": 50},
    "idle_1000": {"clients": 500},
    "idle_5000": {"clients": 1000, "users": 250, "runs": 1},
    "fanout_1000_recovery": {"clients": 500, "count": 20},
    "reconnect_storm": {"clients": 250, "count": 100, "runs": 1},
}
# The kinds beside the app that issue and consume socket tokens (like for like with the
# app): who, and how each sends its queries. Each has a database process of its own,
# started with it (as the python kinds have with --database process), and the load
# generator connects to it as to node_server.js in its MONGODB_URI mode (--server
# node-token), whose API lean_server.py serves too.
TOKEN_KINDS = {
    "node_token": "node: the `mongodb` driver, one query per request",
    "node_token_batched": "node: the `mongodb` driver, the queries of requests that arrive "
    "together batched",
    # An ablation, not in `make bench`: `--servers python,node,lean` adds these three.
    "python_lean": "python without Tornado, engine.io or python-socketio (`lean_server.py`: "
    "the job alone), the queries batched",
    "python_lean_tornado": "python on Tornado alone, without engine.io or python-socketio "
    "(`lean_server.py` with `LEAN_FRONT=tornado`), the queries batched",
    "python_lean_tornado_http": "python on Tornado's HTTP/1 server alone, without its "
    "RequestHandler or WebSocketHandler (`LEAN_FRONT=tornado_http`), the queries batched",
}

SERVERS = {
    "tokens": ("python",),
    "db_limit": ("python",),
    "fanout_100": ("python", "node"),
    "fanout_1000": ("python", "node"),
    "users_1000": ("python", "node"),
    "channel_1000": ("python", "node"),
    "channels_100x10": ("python", "node"),
    # With the token kinds: the like-for-like connect rate.
    "idle_1000": ("python", "node", *TOKEN_KINDS),
    "idle_5000": ("python", "node"),
    "fanout_1000_recovery": ("python_recovery_on", "python_recovery_off"),
    "reconnect_storm": ("python_recovery_on",),
}
ORDER = list(FULL)
# The servers a run can start: kind -> (server, extra settings: of the python app over
# PYTHON_SERVER_ENV and --server-env; of node_server.js). The recovery pair is the same
# app, one setting apart.
KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "python": ("python", {}),
    "node": ("node", {}),
    # node_server.js with socket tokens in the database (its MONGODB_URI mode): the same
    # database process as the python app's, on the same core; one query per request, or
    # batched as the app batches them.
    "node_token": ("node", {}),
    "node_token_batched": ("node", {"TOKEN_BATCHES": "1"}),
    # lean_server.py: the same job in Python without the frameworks, or on Tornado alone
    # (an ablation).
    "python_lean": ("lean", {}),
    "python_lean_tornado": ("lean", {"LEAN_FRONT": "tornado"}),
    "python_lean_tornado_http": ("lean", {"LEAN_FRONT": "tornado_http"}),
    "python_recovery_on": ("python", {"RECOVERY_ENABLED": "true"}),
    "python_recovery_off": ("python", {"RECOVERY_ENABLED": "false"}),
}


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(numbers), 3) if numbers else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# ---------------------------------------------------------------------------- processes


def wait_for_line(
    proc: subprocess.Popen[bytes], log_path: Path, pattern: re.Pattern[str], timeout: float = 90
) -> re.Match[str] | None:
    """Wait up to ``timeout`` s for ``pattern`` in a process's log; None if it exits first
    or never writes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(log_path.read_text(errors="replace"))
        if match or proc.poll() is not None:
            return match
        time.sleep(0.1)
    return None


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.project = args.project.resolve()
        self.node = shutil.which("node") or "node"
        self.log_dir = args.log_dir.resolve()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cores = sorted(os.sched_getaffinity(0))
        self.pin = (cores[0], cores[1]) if (not args.no_pin and len(cores) >= 2) else None
        self.serial = 0
        # The database process of each python server (--database process), to stop with it.
        self.databases: dict[int, subprocess.Popen[bytes]] = {}

    def _affinity(self, core: int | None) -> Callable[[], None] | None:
        if core is None:
            return None
        return lambda: os.sched_setaffinity(0, {core})

    def server_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
        env.update(PYTHON_SERVER_ENV)
        env.update(BENCH_APP_PACKAGE=self.args.package, PYTHONUNBUFFERED="1")
        for item in self.args.server_env:
            key, _, value = item.partition("=")
            env[key] = value
        env.update(extra or {})
        return env

    def start_server(self, kind: str, label: str) -> tuple[subprocess.Popen[bytes], str, Path]:
        self.serial += 1
        log_path = self.log_dir / f"{self.serial:03d}-{label}-{kind}-server.log"
        server, extra_env = KINDS[kind]
        database = None
        if server == "python":
            cmd = [sys.executable, str(BENCH_DIR / "python_server.py")]
            cwd, env = self.project, self.server_env(extra_env)
            if self.args.database == "process":
                database, env["MONGODB_URI"] = self.start_database(label)
        elif server == "lean":
            cmd = [sys.executable, str(LEAN_SERVER)]
            cwd, env = BENCH_DIR, {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
            env.update(extra_env, PYTHONUNBUFFERED="1")
        else:
            cmd = [self.node, "--expose-gc", str(BENCH_DIR / "node_server.js"), "0"]
            cwd, env = BENCH_DIR, {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
            env.update(extra_env)
        if kind in TOKEN_KINDS:
            database, env["MONGODB_URI"] = self.start_database(label)
        out = log_path.open("wb")
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self._affinity(self.pin[0] if self.pin else None),
        )
        out.close()
        if database is not None:
            self.databases[proc.pid] = database
        match = wait_for_line(proc, log_path, LISTENING)
        if match:
            return proc, f"http://{match.group(1)}:{match.group(2)}", log_path
        self.stop_server(proc)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{kind} server did not start (log {log_path}):\n{tail}")

    def start_database(self, label: str) -> tuple[subprocess.Popen[bytes], str]:
        """SecantusDB in a process of its own (db_server.py), pinned to the server's core;
        the process and the MONGODB_URI that reaches it."""
        log_path = self.log_dir / f"{self.serial:03d}-{label}-database.log"
        out = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "db_server.py")],
            cwd=self.project,
            env=self.server_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self._affinity(self.pin[0] if self.pin else None),
        )
        out.close()
        match = wait_for_line(proc, log_path, DATABASE_LISTENING)
        if match:
            return proc, match.group(1)
        self.stop_process(proc)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the database did not start (log {log_path}):\n{tail}")

    def stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        self.stop_process(proc)
        database = self.databases.pop(proc.pid, None)
        if database is not None:
            self.stop_process(database)

    def stop_process(self, proc: subprocess.Popen[bytes], grace: float = 15) -> None:
        """SIGTERM, and SIGKILL if it has not exited ``grace`` seconds later."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                # On a loaded core even a killed server with 1,000 sockets can take a while
                # to go; that must not discard the figures of a run that completed.
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    log(f"warning: server {proc.pid} still running 60 s after SIGKILL")

    def loadgen(self, label: str, args: list[str], timeout: float) -> dict[str, Any]:
        log_path = self.log_dir / f"{self.serial:03d}-{label}-loadgen.log"
        with log_path.open("wb") as err:
            done = subprocess.run(
                [self.node, str(BENCH_DIR / "loadgen.mjs"), *args],
                cwd=BENCH_DIR,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                preexec_fn=self._affinity(self.pin[1] if self.pin else None),
                check=False,
            )
        if done.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"load generator exited {done.returncode} (log {log_path}):\n{tail}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    # ------------------------------------------------------------------------ scenarios

    def run(self, scenario: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        if scenario == "db_limit":
            return self.db_limit(params)
        label = f"{scenario}"
        proc, url, server_log = self.start_server(kind, label)
        try:
            common = [
                "--url",
                url,
                "--server",
                "node-token" if kind in TOKEN_KINDS else KINDS[kind][0],
                "--concurrency",
                str(self.args.concurrency),
            ]
            if scenario == "tokens":
                extra = ["--mode", "tokens", "--duration", str(params["duration"])]
            elif scenario == "reconnect_storm":
                extra = [
                    "--mode",
                    "storm",
                    "--clients",
                    str(params["clients"]),
                    "--count",
                    str(params["count"]),
                    "--size",
                    str(self.args.size),
                    "--timeout",
                    "600",
                ]
            elif scenario.startswith("idle_"):
                extra = ["--mode", "idle", "--clients", str(params["clients"])]
                if "users" in params:
                    extra += ["--users", str(params["users"])]
            else:
                extra = [
                    "--mode",
                    "fanout",
                    "--clients",
                    str(params["clients"]),
                    "--count",
                    str(params["count"]),
                    "--size",
                    str(self.args.size),
                    "--bursts",
                    str(self.args.bursts),
                ]
                if scenario.startswith("users_"):
                    extra += ["--target", "users", "--fraction", str(params["fraction"])]
                elif "channels" in params:
                    extra += ["--target", "channels", "--channels", str(params["channels"])]
            result = self.loadgen(f"{label}-{kind}", common + extra, timeout=1200)
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited during the run (log {server_log})")
            return result
        finally:
            self.stop_server(proc)

    def db_limit(self, params: dict[str, Any]) -> dict[str, Any]:
        self.serial += 1
        log_path = self.log_dir / f"{self.serial:03d}-db_limit.log"
        cmd = [
            sys.executable,
            str(BENCH_DIR / "db_limit.py"),
            "--concurrency",
            str(self.args.concurrency),
            "--duration",
            str(params["duration"]),
            "--handshakes",
            str(params["handshakes"]),
        ]
        database = None
        if self.args.database == "process":
            database, uri = self.start_database("db_limit")
            cmd += ["--uri", uri]
        try:
            done = self._run_db_limit(cmd, log_path)
        finally:
            if database is not None:
                self.stop_process(database)
        if done.returncode != 0:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"db_limit.py exited {done.returncode}:\n{tail}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def _run_db_limit(self, cmd: list[str], log_path: Path) -> subprocess.CompletedProcess[bytes]:
        with log_path.open("wb") as err:
            return subprocess.run(
                cmd,
                cwd=self.project,
                env=self.server_env(),
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                timeout=600,
                preexec_fn=self._affinity(self.pin[0] if self.pin else None),
                check=False,
            )


# ---------------------------------------------------------------------------- summaries


# A burst during which the rest of the machine used more than this share of a core is
# "disturbed"; the summaries also give the figures of the undisturbed bursts alone.
CALM_OTHER_CPU = 0.1


def summarise_fanout(runs: list[dict[str, Any]]) -> dict[str, Any]:
    fan = [r["fanout"] for r in runs]
    bursts = [b for f in fan for b in f.get("bursts", [])]
    calm = [
        b
        for b in bursts
        if b.get("other_cpu_share") is not None and b["other_cpu_share"] <= CALM_OTHER_CPU
    ]
    out = _summarise_fanout(runs, fan, bursts, calm)
    if runs[0].get("channels"):
        # The channel scenarios: the subscription phase before the measurement.
        sub = [r.get("subscribe") or {} for r in runs]
        out["channels"] = runs[0]["channels"]
        out["subscribe"] = {
            "subscriptions": median([s.get("subscriptions") for s in sub]),
            "concurrency": sub[0].get("concurrency"),
            "per_s": median([s.get("per_s") for s in sub]),
            "ack_p50_ms": median([get(s, "ack_ms", "p50") for s in sub]),
            "ack_p99_ms": median([get(s, "ack_ms", "p99") for s in sub]),
            "presence_events": median([s.get("presence_events") for s in sub]),
            "failures": sum(s.get("failures") or 0 for s in sub),
        }
    return out


def _summarise_fanout(
    runs: list[dict[str, Any]],
    fan: list[dict[str, Any]],
    bursts: list[dict[str, Any]],
    calm: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "clients": runs[0]["clients"],
        "targeted_clients": runs[0]["targeted_clients"],
        "count": runs[0]["count"],
        "size": runs[0]["size"],
        "deliveries_per_s": median([f["deliveries_per_s"] for f in fan]),
        "latency_p50_ms": median([f["latency_ms"]["p50"] for f in fan]),
        "latency_p99_ms": median([f["latency_ms"]["p99"] for f in fan]),
        "latency_max_ms": median([f["latency_ms"]["max"] for f in fan]),
        "seconds": median([f["seconds"] for f in fan]),
        "emit_ms": median([f["emit_ms"] for f in fan]),
        "server_cpu_us_per_delivery": median([f["server_cpu_us_per_delivery"] for f in fan]),
        "loadgen_cpu_us_per_delivery": median([f["loadgen_cpu_us_per_delivery"] for f in fan]),
        "server_cpu_share": median([f.get("server_cpu_share") for f in fan]),
        "loadgen_cpu_share": median([f.get("loadgen_cpu_share") for f in fan]),
        "other_cpu_share": median([f.get("other_cpu_share") for f in fan]),
        "exactly_once_in_order": all(f["exactly_once_in_order"] for f in fan),
        "expected": sum(f["expected"] for f in fan),
        "delivered": sum(f["delivered"] for f in fan),
        "lost": sum(f["lost"] for f in fan),
        "duplicates": sum(f["duplicates"] for f in fan),
        "reordered": sum(f["reordered"] for f in fan),
        "unexpected": sum(f["unexpected"] for f in fan),
        # Messages with the trailing {position} argument: all of them with recovery on.
        "with_position": sum(f.get("with_position", 0) for f in fan),
        "deliveries_per_s_runs": [f["deliveries_per_s"] for f in fan],
        "undisturbed": {
            "bursts": len(calm),
            "of": len(bursts),
            "deliveries_per_s": median([b["deliveries_per_s"] for b in calm]),
            "latency_p99_ms": median([b["latency_ms"]["p99"] for b in calm]),
            "server_cpu_us_per_delivery": median([b["server_cpu_us_per_delivery"] for b in calm]),
        },
    }


def summarise_connect(runs: list[dict[str, Any]]) -> dict[str, Any]:
    con = [r["connect"] for r in runs]
    return {
        "runs": len(runs),
        "connections": con[0]["connections"],
        "concurrency": con[0]["concurrency"],
        "includes_token": con[0]["includes_token"],
        "per_s": median([c["per_s"] for c in con]),
        "latency_p50_ms": median([c["latency_ms"]["p50"] for c in con]),
        "latency_p99_ms": median([c["latency_ms"]["p99"] for c in con]),
        "handshake_p50_ms": median([c["handshake_ms"]["p50"] for c in con]),
        "handshake_p99_ms": median([c["handshake_ms"]["p99"] for c in con]),
        "per_s_runs": [c["per_s"] for c in con],
        "server_cpu_share": median([c.get("server_cpu_share") for c in con]),
        "other_cpu_share": median([c.get("other_cpu_share") for c in con]),
        # The server's CPU per connection, and the other processes' (the database's, for
        # a server that has one) over the same phase.
        "server_cpu_ms_per_connection": median([_cpu_ms_per_connection(c) for c in con]),
        "other_cpu_ms_per_connection": median(
            [_cpu_ms_per_connection(c, "other_cpu_share") for c in con]
        ),
    }


def _cpu_ms_per_connection(connect: dict[str, Any], share: str = "server_cpu_share") -> Any:
    """CPU ms per connection of the server (or of the other processes) in a connect phase."""
    if not connect.get("connections") or connect.get(share) is None:
        return None
    return 1000 * connect[share] * connect["seconds"] / connect["connections"]


def _connect_cpu(connect: dict[str, Any] | None) -> str:
    """``server; other`` CPU ms per connection of a connect summary, for the tables."""
    return (
        f"{fmt(get(connect, 'server_cpu_ms_per_connection'), 2)}; "
        f"{fmt(get(connect, 'other_cpu_ms_per_connection'), 2)}"
    )


def summarise_memory(runs: list[dict[str, Any]]) -> dict[str, Any]:
    mem = [r["memory"] for r in runs]
    return {
        "runs": len(runs),
        "sockets": runs[0]["clients"],
        "kb_per_connection": median([m["kb_per_connection"] for m in mem]),
        "rss_before_kb": median([m["rss_before_kb"] for m in mem]),
        "rss_after_kb": median([m["rss_after_kb"] for m in mem]),
        "kb_per_connection_runs": [m["kb_per_connection"] for m in mem],
    }


def summarise_tokens(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "concurrency": runs[0]["concurrency"],
        "per_s": median([r["per_s"] for r in runs]),
        "latency_p50_ms": median([r["latency_ms"]["p50"] for r in runs]),
        "latency_p99_ms": median([r["latency_ms"]["p99"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "per_s_runs": [r["per_s"] for r in runs],
        "server_cpu_share": median([r.get("server_cpu_share") for r in runs]),
        "other_cpu_share": median([r.get("other_cpu_share") for r in runs]),
    }


def summarise_db(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "runs": len(runs),
        "database": runs[0]["database"],
        "concurrency": runs[0]["concurrency"],
    }
    for op in ("token", "token_batched", "handshake", "connect", "connect_batched"):
        out[op] = {
            "queries": runs[0][op]["queries"],
            "per_s": median([r[op]["per_s"] for r in runs]),
            "latency_p50_ms": median([r[op]["latency_ms"]["p50"] for r in runs]),
            "latency_p99_ms": median([r[op]["latency_ms"]["p99"] for r in runs]),
            "per_s_runs": [r[op]["per_s"] for r in runs],
        }
    out["connect"]["rss_kb_per_op"] = median([r["connect"].get("rss_kb_per_op") for r in runs])
    return out


def summarise_storm(runs: list[dict[str, Any]]) -> dict[str, Any]:
    st = [r["storm"] for r in runs]
    total = {
        key: sum(s[key] for s in st)
        for key in (
            "sockets",
            "sockets_recovered",
            "messages_expected",
            "messages_recovered",
            "lost",
            "duplicates",
            "reordered",
            "before_recovery",
            "incomplete_recoveries",
            "sockets_without_recovery",
            "unexpected_recoveries",
            "messages_without_position",
            "stray",
            "reconnect_attempts",
            "stale_auth",
            "token_errors",
            "connect_errors",
            "disconnects",
        )
    }
    return {
        "runs": len(runs),
        "clients": runs[0]["clients"],
        "count": runs[0]["count"],
        "concurrency": runs[0]["connect"]["concurrency"],
        # Seconds from reconnect start (the K messages emitted) until every socket has
        # all K; a run in which some socket never had them counts as None here.
        "seconds": median([s["seconds"] for s in st]),
        "reconnected_s": median([s["reconnected_s"] for s in st]),
        "from_drop_s": median([s["from_drop_s"] for s in st]),
        "socket_done_p50_s": median([s["socket_done_s"]["p50"] for s in st]),
        "socket_done_p99_s": median([s["socket_done_s"]["p99"] for s in st]),
        "sockets_per_s": median([s["sockets_per_s"] for s in st]),
        "server_cpu_ms_per_socket": median([s["server_cpu_ms_per_socket"] for s in st]),
        "server_cpu_share": median([s.get("server_cpu_share") for s in st]),
        "loadgen_cpu_share": median([s.get("loadgen_cpu_share") for s in st]),
        "other_cpu_share": median([s.get("other_cpu_share") for s in st]),
        "server_empty_s": median([r["drop"]["server_empty_s"] for r in runs]),
        "transports_reopened_before_start": sum(
            r["drop"]["transports_reopened_before_start"] for r in runs
        ),
        **total,
        "timed_out": any(s["timed_out"] for s in st),
        "exactly_once_in_order": all(s["exactly_once_in_order"] for s in st),
        "seconds_runs": [s["seconds"] for s in st],
    }


def summarise_recovery(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any] | None:
    """Issue 16: recovery on against off (same run), and the reconnect storm."""
    out: dict[str, Any] = {}
    on = raw.get("fanout_1000_recovery", {}).get("python_recovery_on") or []
    off = raw.get("fanout_1000_recovery", {}).get("python_recovery_off") or []
    if on or off:
        fan: dict[str, Any] = {
            "on": summarise_fanout(on) if on else None,
            "off": summarise_fanout(off) if off else None,
        }
        for name, path in (
            ("cpu_per_delivery", ("server_cpu_us_per_delivery",)),
            ("deliveries_per_s", ("deliveries_per_s",)),
            ("cpu_per_delivery_undisturbed", ("undisturbed", "server_cpu_us_per_delivery")),
        ):
            fan[f"{name}_on_over_off"] = ratio(get(fan, "on", *path), get(fan, "off", *path))
        # Run by run: the on and off servers of one repetition ran next to each other.
        off_by_run = {r.get("repetition"): r for r in off}
        fan["cpu_per_delivery_on_over_off_runs"] = [
            ratio(
                r["fanout"]["server_cpu_us_per_delivery"],
                off_by_run[r.get("repetition")]["fanout"]["server_cpu_us_per_delivery"],
            )
            for r in on
            if r.get("repetition") in off_by_run
        ]
        out["fanout_1000"] = fan
    storm = raw.get("reconnect_storm", {}).get("python_recovery_on")
    if storm:
        out["reconnect_storm"] = summarise_storm(storm)
    return out or None


def summarise(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    servers: dict[str, dict[str, Any]] = {"python": {}, "node": {}}
    servers.update((kind, {}) for kind in TOKEN_KINDS)
    for kind in servers:
        figures = servers[kind]
        for scenario in FANOUT_SCENARIOS:
            runs = raw.get(scenario, {}).get(kind)
            if runs:
                figures[scenario] = summarise_fanout(runs)
        for scenario in ("idle_1000", "idle_5000"):
            runs = raw.get(scenario, {}).get(kind)
            if runs:
                figures[f"memory_{scenario[5:]}"] = summarise_memory(runs)
        if raw.get("idle_1000", {}).get(kind):
            # The connect rate: the idle runs at 1,000 sockets do nothing else.
            figures["connect"] = summarise_connect(raw["idle_1000"][kind])
        if kind == "python" and raw.get("tokens", {}).get("python"):
            figures["token_issue"] = summarise_tokens(raw["tokens"]["python"])
    db = summarise_db(raw["db_limit"]["python"]) if raw.get("db_limit", {}).get("python") else None
    return {"servers": servers, "db_limit": db, "recovery": summarise_recovery(raw)}


# The scenarios summarised as fan-out (deliveries, latency, CPU per delivery).
FANOUT_SCENARIOS = ("fanout_100", "fanout_1000", "users_1000", "channel_1000", "channels_100x10")


def get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


RATIO_DIRECTIONS = {
    "fanout_deliveries_per_s_100": "python / node deliveries per second (emitToEveryone, 100)",
    "fanout_deliveries_per_s_1000": "python / node deliveries per second (emitToEveryone, 1000)",
    "users_deliveries_per_s_1000": "python / node deliveries per second (emitToUsers, 10%)",
    "fanout_deliveries_per_s_100_undisturbed": "the same, bursts undisturbed by others only",
    "fanout_deliveries_per_s_1000_undisturbed": "the same, bursts undisturbed by others only",
    "users_deliveries_per_s_1000_undisturbed": "the same, bursts undisturbed by others only",
    "fanout_latency_p99_100": "node p99 / python p99 (lower latency is better)",
    "fanout_latency_p99_1000": "node p99 / python p99 (lower latency is better)",
    "fanout_cpu_per_delivery_100": "node / python server CPU µs per delivery (everyone, 100)",
    "fanout_cpu_per_delivery_1000": "node / python server CPU µs per delivery (everyone, 1000)",
    "users_cpu_per_delivery_1000": "node / python server CPU µs per delivery (emitToUsers)",
    "memory_per_idle_connection_1000": "node KB / python KB per idle connection",
    "memory_per_idle_connection_5000": "node KB / python KB per idle connection",
    "channel_deliveries_per_s_1000": "python / node deliveries per second (emitToChannel, "
    "1 channel of 1000 subscribers)",
    "channels_deliveries_per_s_100x10": "python / node deliveries per second (emitToChannel, "
    "100 channels of 10 subscribers, every channel per message)",
    "channel_deliveries_per_s_1000_undisturbed": "the same, bursts undisturbed by others only",
    "channels_deliveries_per_s_100x10_undisturbed": "the same, bursts undisturbed by others only",
    "channel_latency_p99_1000": "node p99 / python p99 (lower latency is better)",
    "channels_latency_p99_100x10": "node p99 / python p99 (lower latency is better)",
    "channel_cpu_per_delivery_1000": "node / python server CPU µs per delivery (emitToChannel, "
    "1 channel of 1000)",
    "channels_cpu_per_delivery_100x10": "node / python server CPU µs per delivery "
    "(emitToChannel, 100 channels of 10)",
    "connect_python_over_node_handshake": "python connections/s (token + handshake) / node "
    "connections/s (bare handshake, no token): not like for like, the target compares them",
    "connect_python_over_node_token": "python connections/s / node connections/s, both a "
    "socket token (stored in the same database process) then the handshake that consumes "
    "it: like for like (node: one query per request)",
    "connect_python_over_node_token_batched": "the same, node batching its queries as the app does",
    "connect_python_over_python_lean": "the same against lean_server.py, the job in Python "
    "without Tornado, engine.io or python-socketio (an ablation: `--servers python,node,lean`)",
    "connect_python_over_python_lean_tornado": "the same against lean_server.py on Tornado "
    "alone (LEAN_FRONT=tornado), without engine.io or python-socketio (the same ablation)",
    "connect_python_over_python_lean_tornado_http": "the same against lean_server.py on "
    "Tornado's HTTP/1 server alone (LEAN_FRONT=tornado_http): no RequestHandler, no "
    "WebSocketHandler (the same ablation)",
    "token_issue_fraction_of_db_limit": "app token requests/s / the database's token queries/s",
    "token_issue_fraction_of_batched_db_limit": "app token requests/s / the database's "
    "token queries/s when batched as the app batches them",
    "connect_fraction_of_db_limit": "app connections/s / the database's connect queries/s",
    "connect_fraction_of_batched_db_limit": "app connections/s / the database's connect "
    "queries/s when batched as the app batches them",
}


# python/node ratios: name -> (where the figure is in a server's summary, whether a
# higher figure is better). Each ratio is oriented so that higher is better for python.
SERVER_RATIOS: dict[str, tuple[tuple[str, ...], bool]] = {
    "fanout_deliveries_per_s_100": (("fanout_100", "deliveries_per_s"), True),
    "fanout_deliveries_per_s_1000": (("fanout_1000", "deliveries_per_s"), True),
    "users_deliveries_per_s_1000": (("users_1000", "deliveries_per_s"), True),
    "fanout_deliveries_per_s_100_undisturbed": (
        ("fanout_100", "undisturbed", "deliveries_per_s"),
        True,
    ),
    "fanout_deliveries_per_s_1000_undisturbed": (
        ("fanout_1000", "undisturbed", "deliveries_per_s"),
        True,
    ),
    "users_deliveries_per_s_1000_undisturbed": (
        ("users_1000", "undisturbed", "deliveries_per_s"),
        True,
    ),
    "fanout_latency_p99_100": (("fanout_100", "latency_p99_ms"), False),
    "fanout_latency_p99_1000": (("fanout_1000", "latency_p99_ms"), False),
    "fanout_cpu_per_delivery_100": (("fanout_100", "server_cpu_us_per_delivery"), False),
    "fanout_cpu_per_delivery_1000": (("fanout_1000", "server_cpu_us_per_delivery"), False),
    "users_cpu_per_delivery_1000": (("users_1000", "server_cpu_us_per_delivery"), False),
    "memory_per_idle_connection_1000": (("memory_1000", "kb_per_connection"), False),
    "memory_per_idle_connection_5000": (("memory_5000", "kb_per_connection"), False),
    "channel_deliveries_per_s_1000": (("channel_1000", "deliveries_per_s"), True),
    "channels_deliveries_per_s_100x10": (("channels_100x10", "deliveries_per_s"), True),
    "channel_deliveries_per_s_1000_undisturbed": (
        ("channel_1000", "undisturbed", "deliveries_per_s"),
        True,
    ),
    "channels_deliveries_per_s_100x10_undisturbed": (
        ("channels_100x10", "undisturbed", "deliveries_per_s"),
        True,
    ),
    "channel_latency_p99_1000": (("channel_1000", "latency_p99_ms"), False),
    "channels_latency_p99_100x10": (("channels_100x10", "latency_p99_ms"), False),
    "channel_cpu_per_delivery_1000": (("channel_1000", "server_cpu_us_per_delivery"), False),
    "channels_cpu_per_delivery_100x10": (
        ("channels_100x10", "server_cpu_us_per_delivery"),
        False,
    ),
    "connect_python_over_node_handshake": (("connect", "per_s"), True),
}


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    py, nd = summary["servers"]["python"], summary["servers"]["node"]
    db = summary["db_limit"]
    result: dict[str, float | None] = {}
    for name, (path, higher_is_better) in SERVER_RATIOS.items():
        python, node = get(py, *path), get(nd, *path)
        result[name] = ratio(python, node) if higher_is_better else ratio(node, python)
    result["token_issue_fraction_of_db_limit"] = ratio(
        get(py, "token_issue", "per_s"), get(db, "token", "per_s")
    )
    # The app batches concurrent token requests' queries: its rate against the limit of
    # the batched queries too (the issue's target is the one above, per-request queries).
    result["token_issue_fraction_of_batched_db_limit"] = ratio(
        get(py, "token_issue", "per_s"), get(db, "token_batched", "per_s")
    )
    result["connect_fraction_of_db_limit"] = ratio(
        get(py, "connect", "per_s"), get(db, "connect", "per_s")
    )
    result["connect_fraction_of_batched_db_limit"] = ratio(
        get(py, "connect", "per_s"), get(db, "connect_batched", "per_s")
    )
    for kind in TOKEN_KINDS:
        result[f"connect_python_over_{kind}"] = ratio(
            get(py, "connect", "per_s"), get(summary["servers"].get(kind), "connect", "per_s")
        )
    return result


def targets(
    r: dict[str, float | None],
    recovery: dict[str, Any] | None,
    server_env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Issues 7, 16, 20 and 23's targets, reported (never enforced)."""

    def check(name: str, value: float | None, goal: str, met: bool | None) -> dict[str, Any]:
        return {"target": name, "value": value, "goal": goal, "met": met}

    fan = r["fanout_deliveries_per_s_1000"]
    # The memory and CPU ratios are node/python (higher is better): python's share of
    # Node's figure is their inverse.
    mem = _inverse(r["memory_per_idle_connection_1000"])
    cpu = _inverse(r["fanout_cpu_per_delivery_1000"])
    tok = r["token_issue_fraction_of_db_limit"]
    con = r["connect_fraction_of_db_limit"]
    rec = get(recovery, "fanout_1000", "cpu_per_delivery_on_over_off")
    return [
        check("fan-out deliveries/s at 1000, python/node", fan, ">= 0.5", _ge(fan, 0.5)),
        check("fan-out deliveries/s at 1000, python/node", fan, ">= 1.0", _ge(fan, 1.0)),
        check("fan-out deliveries/s at 1000, python/node", fan, ">= 1.2", _ge(fan, 1.2)),
        check("fan-out CPU per delivery at 1000, python/node", cpu, "<= 0.35", _le(cpu, 0.35)),
        check("memory per idle connection at 1000, python/node", mem, "<= 1.5", _le(mem, 1.5)),
        check("token issue rate / database limit", tok, ">= 0.7", _ge(tok, 0.7)),
        check("connect rate / database limit", con, ">= 0.7", _ge(con, 0.7)),
        check("recovery CPU per delivery at 1000, on/off", rec, "<= 1.15", _le(rec, 1.15)),
        *issue_23_targets(r, recovery, server_env or {}, check),
    ]


def issue_23_targets(
    r: dict[str, float | None],
    recovery: dict[str, Any] | None,
    server_env: dict[str, str],
    check: Callable[[str, float | None, str, bool | None], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Issue 23 (presence events off by default, channels): its goals."""
    connect = r.get("connect_python_over_node_handshake")
    # The storm's goal is for 1,000 sockets: a smaller storm (quick mode) is shown, not judged.
    storm = get(recovery, "reconnect_storm")
    storm_s = get(storm, "seconds")
    storm_met: bool | None = None
    if storm and (storm.get("clients") or 0) >= 1000:
        complete = storm.get("exactly_once_in_order") and storm_s is not None
        storm_met = bool(complete) and storm_s < 3
    clients = (storm or {}).get("clients") or 1000
    storm_name = (
        f"reconnect storm of {clients:,} sockets: seconds until every socket fully recovered"
    )
    if clients != 1000:
        storm_name += " (the goal is for 1,000)"
    # Memory at 5,000 with the fast path on (FAST_FANOUT, the default): a run with it off
    # is shown, not judged.
    mem = _inverse(r.get("memory_per_idle_connection_5000"))
    fast_off = server_env.get("FAST_FANOUT", "true").strip().lower() in {"0", "false", "no", "off"}
    users_cpu = _inverse(r.get("users_cpu_per_delivery_1000"))
    channel_cpu = _inverse(r.get("channel_cpu_per_delivery_1000"))
    channels_cpu = _inverse(r.get("channels_cpu_per_delivery_100x10"))
    return [
        check(
            "connect rate, python (token + handshake) / node (bare handshake)",
            connect,
            ">= 0.5",
            _ge(connect, 0.5),
        ),
        check(
            storm_name,
            storm_s,
            "< 3 (all sockets, all messages, exactly once)",
            storm_met,
        ),
        check(
            "memory per idle connection at 5000, python/node (fast path on)",
            mem,
            "<= 1.0",
            None if fast_off else _le(mem, 1.0),
        ),
        check(
            "emitToUsers CPU per delivery at 1000, python/node",
            users_cpu,
            "<= 0.5",
            _le(users_cpu, 0.5),
        ),
        check(
            "emitToChannel CPU per delivery, 1 channel of 1000, python/node",
            channel_cpu,
            "<= 0.5",
            _le(channel_cpu, 0.5),
        ),
        check(
            "emitToChannel CPU per delivery, 100 channels of 10, python/node",
            channels_cpu,
            "<= 0.5",
            _le(channels_cpu, 0.5),
        ),
    ]


def _inverse(value: float | None) -> float | None:
    return round(1 / value, 3) if value else None


def _ge(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _le(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


# ---------------------------------------------------------------------------- machine


def libpython_shared() -> bool:
    """Whether this interpreter runs on a shared libpython (pyenv's and most source
    builds) rather than one linked into the executable (Debian's)."""
    with contextlib.suppress(OSError):
        return "/libpython" in Path("/proc/self/maps").read_text()
    return False


def machine_info(harness: Harness) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def node_package(name: str) -> str | None:
        path = BENCH_DIR / "node_modules" / name / "package.json"
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text())["version"]
        return None

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    node_version = subprocess.run(
        [harness.node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        # Which build runs the app and its database (the Makefile's BENCH_PYTHON): builds
        # of one release differ in speed (PGO + LTO or not, libpython linked in or not).
        "python_executable": os.path.realpath(sys.executable),
        "python_libpython": "shared" if libpython_shared() else "linked in",
        "node": node_version,
        "pinning": (
            {"server_core": harness.pin[0], "loadgen_core": harness.pin[1]} if harness.pin else None
        ),
        "database": DATABASES[harness.args.database],
        "template_commit": (commit + ("+uncommitted changes" if dirty else "")) or None,
        "packages": {
            "python": {
                name: version(name)
                for name in (
                    harness.args.package,
                    "tornado",
                    "python-socketio",
                    "python-engineio",
                    "pymongo",
                    "motor",
                    "SecantusDB",
                    "PyJWT",
                    "argon2-cffi",
                    "uvloop",
                    "orjson",
                )
                if version(name)
            },
            "node": {
                name: node_package(name)
                for name in ("socket.io", "socket.io-client", "engine.io", "engine.io-client", "ws")
            },
        },
    }


def loadavg() -> list[float] | None:
    with contextlib.suppress(OSError, ValueError):
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return None


# ---------------------------------------------------------------------------- reports


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    py = result["servers"]["python"]
    nd = result["servers"]["node"]
    db = result["db_limit"]
    r = result["ratios"]
    m = result["machine"]
    lines = [
        f"Run {result['generated_at']} ({result['mode']} mode, {result['duration_s']:.0f} s), "
        f"{m['cores']} cores ({m['cpu_model']}), Python {m['python']} "
        f"({m.get('python_executable')}, libpython {m.get('python_libpython')}), Node {m['node']}, "
        f"python-socketio {m['packages']['python'].get('python-socketio')}, "
        f"python-engineio {m['packages']['python'].get('python-engineio')}, "
        f"tornado {m['packages']['python'].get('tornado')}, "
        f"socket.io {m['packages']['node'].get('socket.io')}; "
        f"template {m['template_commit']}; "
        f"load average before/after {result['loadavg_before']} / {result['loadavg_after']}. "
        f"Medians of {result['config']['runs']} run(s), fresh server per run. "
        f"The python app's database: {m.get('database', DATABASES['embedded'])}.",
        "",
        "| figure | python (generated app) | node (socket.io) | ratio |",
        "|---|---|---|---|",
    ]

    def fan_rows(key: str, title: str, ratio_key: str | None) -> None:
        p, n = py.get(key), nd.get(key)
        if not p and not n:
            return
        ref = p or n
        head = f"{title}, C={ref['clients']}"
        if ref["targeted_clients"] != ref["clients"]:
            head += f" ({ref['targeted_clients']} targeted)"
        head += f", K={ref['count']}"
        lines.append(
            f"| {head}: deliveries/s | {fmt(get(p, 'deliveries_per_s'))} | "
            f"{fmt(get(n, 'deliveries_per_s'))} | "
            f"{fmt(r.get(ratio_key), 3) if ratio_key else '—'} |"
        )
        pu, nu = get(p, "undisturbed") or {}, get(n, "undisturbed") or {}
        lines.append(
            f"| {head}: deliveries/s, bursts undisturbed by other processes only "
            f"(bursts counted) | {fmt(pu.get('deliveries_per_s'))} ({pu.get('bursts', 0)} of "
            f"{pu.get('of', 0)}) | {fmt(nu.get('deliveries_per_s'))} ({nu.get('bursts', 0)} of "
            f"{nu.get('of', 0)}) | "
            f"{fmt(r.get(ratio_key + '_undisturbed'), 3) if ratio_key else '—'} |"
        )
        lines.append(
            f"| {head}: latency p50 / p99 ms | {fmt(get(p, 'latency_p50_ms'))} / "
            f"{fmt(get(p, 'latency_p99_ms'))} | {fmt(get(n, 'latency_p50_ms'))} / "
            f"{fmt(get(n, 'latency_p99_ms'))} | |"
        )

        def shares(x: dict[str, Any] | None) -> str:
            return (
                f"{fmt(get(x, 'server_cpu_us_per_delivery'), 1)} "
                f"({fmt(get(x, 'server_cpu_share'), 2)} / {fmt(get(x, 'loadgen_cpu_share'), 2)}"
                f" / {fmt(get(x, 'other_cpu_share'), 2)})"
            )

        cpu_key = ratio_key.replace("deliveries_per_s", "cpu_per_delivery") if ratio_key else ""
        lines.append(
            f"| {head}: server CPU µs per delivery (cores used by server / load generator / "
            f"other processes) | {shares(p)} | {shares(n)} | "
            f"{fmt(r.get(cpu_key), 3) if cpu_key else ''} (node/python) |"
        )

    fan_rows("fanout_100", "emitToEveryone", "fanout_deliveries_per_s_100")
    fan_rows("fanout_1000", "emitToEveryone", "fanout_deliveries_per_s_1000")
    fan_rows("users_1000", "emitToUsers 10% of users", "users_deliveries_per_s_1000")
    for key, ratio_key in (
        ("channel_1000", "channel_deliveries_per_s_1000"),
        ("channels_100x10", "channels_deliveries_per_s_100x10"),
    ):
        ref = py.get(key) or nd.get(key)
        if not ref:
            continue
        n = ref.get("channels") or 1
        title = (
            "emitToChannel, 1 channel of every socket"
            if n == 1
            else f"emitToChannel, {n} channels of {ref['clients'] // n}, each message to all"
        )
        fan_rows(key, title, ratio_key)
        ps, ns = get(py, key, "subscribe"), get(nd, key, "subscribe")

        def sub(x: dict[str, Any] | None) -> str:
            if not x:
                return "—"
            return (
                f"{fmt(x.get('per_s'))} ({fmt(x.get('ack_p50_ms'), 1)} / "
                f"{fmt(x.get('ack_p99_ms'), 1)}; {fmt(x.get('presence_events'))})"
            )

        lines.append(
            f"| {title}: subscribe before the bursts, {ref['clients']} sockets, "
            f"{get(ps or ns, 'concurrency')} at a time: subscriptions/s (ack p50 / "
            f"p99 ms; presence `join` events received) | {sub(ps)} | {sub(ns)} | |"
        )
    for size in ("1000", "5000"):
        key = f"memory_{size}"
        if py.get(key) or nd.get(key):
            ref = py.get(key) or nd.get(key)
            lines.append(
                f"| memory per idle connection, {ref['sockets']:,} sockets: KB (RSS delta / "
                f"sockets) | {fmt(get(py, key, 'kb_per_connection'), 1)} | "
                f"{fmt(get(nd, key, 'kb_per_connection'), 1)} | "
                f"{fmt(r.get(f'memory_per_idle_connection_{size}'), 3)} (node/python) |"
            )
    if py.get("token_issue"):
        t = py["token_issue"]
        lines.append(
            f"| token issue, {t['concurrency']} concurrent clients: requests/s (p50 / p99 ms) | "
            f"{fmt(t['per_s'])} ({fmt(t['latency_p50_ms'], 1)} / {fmt(t['latency_p99_ms'], 1)})"
            f" | — | {fmt(r.get('token_issue_fraction_of_db_limit'), 3)} of the DB limit |"
        )
    if py.get("connect") or nd.get("connect"):
        pc, nc = py.get("connect"), nd.get("connect")
        lines.append(
            f"| connect, {get(pc or nc, 'connections')} sockets, "
            f"{get(pc or nc, 'concurrency')} at a time: connections/s "
            f"(python: token + handshake; node: handshake only) | {fmt(get(pc, 'per_s'))} | "
            f"{fmt(get(nc, 'per_s'))} | "
            f"{fmt(r.get('connect_fraction_of_db_limit'), 3)} of the DB limit |"
        )
    for kind, how in TOKEN_KINDS.items():
        tc = get(result["servers"].get(kind), "connect")
        if tc:
            lines.append(
                f"| connect, like for like: a socket token, then the handshake that consumes "
                f"it ({how}; the same database process on the server's core): "
                f"connections/s (server CPU ms per connection; the database's) | "
                f"{fmt(get(py, 'connect', 'per_s'))} ({_connect_cpu(py.get('connect'))}) | "
                f"{fmt(tc['per_s'])} ({_connect_cpu(tc)}) "
                f"| {fmt(r.get(f'connect_python_over_{kind}'), 3)} (python/{KINDS[kind][0]}) |"
            )
    if db:
        lines.append(
            f"| database limit (driver only, same queries, {db['concurrency']} concurrent, "
            f"{db['database']}): token / handshake / connect ops/s | "
            f"{fmt(get(db, 'token', 'per_s'))} / {fmt(get(db, 'handshake', 'per_s'))} / "
            f"{fmt(get(db, 'connect', 'per_s'))} | | |"
        )
        lines.append(
            f"| database limit for the same token queries batched as the app sends them "
            f"({db['concurrency']} tokens per insert_many): tokens/s | "
            f"{fmt(get(db, 'token_batched', 'per_s'))} | | app token issue: "
            f"{fmt(r.get('token_issue_fraction_of_batched_db_limit'), 3)} of it |"
        )
        lines.append(
            f"| database limit for the same connect queries batched as the app sends them "
            f"({db['concurrency']} connections per insert_many + delete_many): "
            f"connections/s | {fmt(get(db, 'connect_batched', 'per_s'))} | | app connect: "
            f"{fmt(r.get('connect_fraction_of_batched_db_limit'), 3)} of it |"
        )
        if result["machine"].get("database", "").endswith("(APP_ENV=test)"):
            lines.append(
                f"| of which the embedded database's own growth per connection's queries, KB "
                f"(part of python's memory per connection) | "
                f"{fmt(get(db, 'connect', 'rss_kb_per_op'), 1)} | | |"
            )
    checks = []
    for kind, figures in (("python", py), ("node", nd)):
        for key in ("fanout_100", "fanout_1000", "users_1000"):
            if figures.get(key):
                checks.append((kind, key, figures[key]))
    if checks:
        py_ok = all(f["exactly_once_in_order"] for k, _, f in checks if k == "python")
        nd_ok = all(f["exactly_once_in_order"] for k, _, f in checks if k == "node")
        lines.append(
            f"| every message delivered exactly once, in order, per socket | {fmt(py_ok)} | "
            f"{fmt(nd_ok)} | |"
        )
    channel_checks = [
        (kind, figures[key])
        for kind, figures in (("python", py), ("node", nd))
        for key in ("channel_1000", "channels_100x10")
        if figures.get(key)
    ]
    if channel_checks:
        py_ok = all(f["exactly_once_in_order"] for k, f in channel_checks if k == "python")
        nd_ok = all(f["exactly_once_in_order"] for k, f in channel_checks if k == "node")
        lines.append(
            f"| every channel message delivered exactly once, in order, per subscribed socket | "
            f"{fmt(py_ok)} | {fmt(nd_ok)} | |"
        )
    lines += recovery_rows(result.get("recovery"))
    lines += ["", "Issue targets (issues 7, 16 and 23; reported, never enforced):", ""]
    for t in result["targets"]:
        met = {True: "met", False: "not met", None: "not measured"}[t["met"]]
        lines.append(f"- {t['target']} {t['goal']}: {fmt(t['value'], 3)} — {met}")
    if result["errors"]:
        lines += ["", "Runs that failed:", ""]
        lines += [
            f"- {e['scenario']} / {e['server']} run {e['run']}: {e['error']}"
            for e in result["errors"]
        ]
    return "\n".join(lines) + "\n"


def recovery_rows(rec: dict[str, Any] | None) -> list[str]:
    """Issue 16's table: the python app with recovery on and off, and the reconnect storm."""
    if not rec:
        return []
    lines = [
        "",
        "Recovery (issue 16): the generated app with RECOVERY_ENABLED true and false, "
        "fresh server per run, interleaved.",
        "",
        "| figure | recovery on | recovery off | on / off |",
        "|---|---|---|---|",
    ]
    fan = rec.get("fanout_1000")
    if fan:
        on, off = fan.get("on"), fan.get("off")
        ref = on or off
        head = f"emitToEveryone, C={ref['clients']}, K={ref['count']}"

        def shares(x: dict[str, Any] | None) -> str:
            return (
                f"{fmt(get(x, 'server_cpu_us_per_delivery'), 1)} "
                f"({fmt(get(x, 'server_cpu_share'), 2)} / {fmt(get(x, 'loadgen_cpu_share'), 2)}"
                f" / {fmt(get(x, 'other_cpu_share'), 2)})"
            )

        runs = ", ".join(fmt(v, 3) for v in fan.get("cpu_per_delivery_on_over_off_runs", []))
        lines.append(
            f"| {head}: server CPU µs per delivery (cores used by server / load generator / "
            f"other processes) | {shares(on)} | {shares(off)} | "
            f"{fmt(fan.get('cpu_per_delivery_on_over_off'), 3)}"
            f"{f' (run by run: {runs})' if runs else ''} |"
        )
        ou, fu = get(on, "undisturbed") or {}, get(off, "undisturbed") or {}
        lines.append(
            f"| {head}: server CPU µs per delivery, bursts undisturbed by other processes only "
            f"(bursts counted) | {fmt(ou.get('server_cpu_us_per_delivery'), 1)} "
            f"({ou.get('bursts', 0)} of {ou.get('of', 0)}) | "
            f"{fmt(fu.get('server_cpu_us_per_delivery'), 1)} ({fu.get('bursts', 0)} of "
            f"{fu.get('of', 0)}) | {fmt(fan.get('cpu_per_delivery_undisturbed_on_over_off'), 3)} |"
        )
        lines.append(
            f"| {head}: deliveries/s | {fmt(get(on, 'deliveries_per_s'))} | "
            f"{fmt(get(off, 'deliveries_per_s'))} | "
            f"{fmt(fan.get('deliveries_per_s_on_over_off'), 3)} |"
        )
        lines.append(
            f"| {head}: latency p50 / p99 ms | {fmt(get(on, 'latency_p50_ms'))} / "
            f"{fmt(get(on, 'latency_p99_ms'))} | {fmt(get(off, 'latency_p50_ms'))} / "
            f"{fmt(get(off, 'latency_p99_ms'))} | |"
        )
        lines.append(
            f"| {head}: messages that carried a position (trailing argument) / delivered | "
            f"{fmt(get(on, 'with_position'))} / {fmt(get(on, 'delivered'))} | "
            f"{fmt(get(off, 'with_position'))} / {fmt(get(off, 'delivered'))} | |"
        )
        lines.append(
            f"| {head}: every message delivered exactly once, in order, per socket | "
            f"{fmt(get(on, 'exactly_once_in_order'))} | {fmt(get(off, 'exactly_once_in_order'))}"
            " | |"
        )
    st = rec.get("reconnect_storm")
    if st:
        head = f"reconnect storm, C={st['clients']:,}, K={st['count']}"
        each = st.get("seconds_runs") or []
        by_run = f"; run by run {' / '.join(fmt(x, 1) for x in each)}" if len(each) > 1 else ""
        lines.append(
            f"| {head} (C sockets drop their transport, K messages are emitted, all reconnect, "
            f"{st['concurrency']} token + handshake at a time): seconds from reconnect start "
            f"until every socket has all K (from the drop; all reconnected; per socket p50 / "
            f"p99) | {fmt(st['seconds'], 1)} ({fmt(st['from_drop_s'], 1)}; "
            f"{fmt(st['reconnected_s'], 1)}; {fmt(st['socket_done_p50_s'], 1)} / "
            f"{fmt(st['socket_done_p99_s'], 1)}{by_run}) | — | |"
        )
        lines.append(
            f"| {head}: sockets recovered / expected; messages recovered / expected | "
            f"{fmt(st['sockets_recovered'])} / {fmt(st['sockets'])}; "
            f"{fmt(st['messages_recovered'])} / {fmt(st['messages_expected'])} | — | |"
        )
        lines.append(
            f"| {head}: server CPU ms per socket (cores used by server / load generator / "
            f"other processes); reconnect attempts, connect errors | "
            f"{fmt(st['server_cpu_ms_per_socket'], 1)} ({fmt(st['server_cpu_share'], 2)} / "
            f"{fmt(st['loadgen_cpu_share'], 2)} / {fmt(st['other_cpu_share'], 2)}); "
            f"{fmt(st['reconnect_attempts'])}, {fmt(st['connect_errors'])} | — | |"
        )
        lines.append(
            f"| {head}: exactly once, in order, after `recovery` complete=true (duplicates / "
            f"gaps / out of order / before `recovery` / incomplete recoveries) | "
            f"{fmt(st['exactly_once_in_order'])} ({st['duplicates']} / {st['lost']} / "
            f"{st['reordered']} / {st['before_recovery']} / {st['incomplete_recoveries']}) "
            "| — | |"
        )
    return lines


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    py = result["servers"]["python"]
    nd = result["servers"]["node"]
    db = result["db_limit"]
    colours = {"python": "#3572A5", "node": "#6cc24a", "db": "#999999"}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))

    def grouped(ax: Any, keys: list[tuple[str, str]], field: str, title: str, unit: str) -> None:
        labels = [label for _, label in keys]
        xs = range(len(keys))
        width = 0.38
        for offset, kind, figures in ((-width / 2, "python", py), (width / 2, "node", nd)):
            values = [get(figures, key, field) or 0 for key, _ in keys]
            bars = ax.bar([x + offset for x in xs], values, width, label=kind, color=colours[kind])
            ax.bar_label(
                bars,
                labels=[f"{v:,.0f}" if v >= 10 else f"{v:,.1f}" for v in values],
                fontsize=8,
                padding=2,
            )
        ax.set_xticks(list(xs), labels, fontsize=8 if len(keys) <= 3 else 6.5)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=9)
        ax.legend(fontsize=8)
        ax.margins(y=0.15)

    def label(key: str, name: str) -> str:
        ref = py.get(key) or nd.get(key)
        if not ref:
            return name
        extra = (
            f"\n{ref['targeted_clients']} targeted"
            if ref["targeted_clients"] != ref["clients"]
            else ""
        )
        return f"{name}\nC={ref['clients']}, K={ref['count']}{extra}"

    fan = [
        ("fanout_100", label("fanout_100", "emitToEveryone")),
        ("fanout_1000", label("fanout_1000", "emitToEveryone")),
        ("users_1000", label("users_1000", "emitToUsers 10%")),
    ]
    for key in ("channel_1000", "channels_100x10"):
        ref = py.get(key) or nd.get(key)
        if ref:
            n = ref.get("channels") or 1
            fan.append((key, label(key, f"emitToChannel\n{n} channel{'s' if n > 1 else ''}")))
    grouped(
        axes[0][0],
        fan,
        "deliveries_per_s",
        "Fan-out: deliveries per second (higher is better)",
        "deliveries/s",
    )
    grouped(
        axes[0][1], fan, "latency_p99_ms", "Fan-out: end-to-end latency p99 (lower is better)", "ms"
    )
    grouped(
        axes[0][2], fan, "latency_p50_ms", "Fan-out: end-to-end latency p50 (lower is better)", "ms"
    )
    grouped(
        axes[1][0],
        fan,
        "server_cpu_us_per_delivery",
        "Server CPU per delivery (lower is better)",
        "µs",
    )
    mem = [
        (key, f"{(py.get(key) or nd.get(key) or {}).get('sockets', '?')} idle sockets")
        for key in ("memory_1000", "memory_5000")
    ]
    grouped(
        axes[1][1],
        mem,
        "kb_per_connection",
        "Memory per idle connection (lower is better)",
        "KB (RSS delta / sockets)",
    )

    ax = axes[1][2]
    bars = [
        ("token issue\n(app)", get(py, "token_issue", "per_s"), colours["python"]),
        ("token queries\n(DB limit)", get(db, "token", "per_s"), colours["db"]),
        ("connect\n(app: token\n+ handshake)", get(py, "connect", "per_s"), colours["python"]),
        ("connect\nqueries\n(DB limit)", get(db, "connect", "per_s"), colours["db"]),
        ("connect\n(node:\nhandshake\nonly)", get(nd, "connect", "per_s"), colours["node"]),
        (
            "connect\n(node: token\n+ handshake,\nbatched)",
            get(result["servers"].get("node_token_batched"), "connect", "per_s"),
            colours["node"],
        ),
    ]
    drawn = ax.bar(range(len(bars)), [b[1] or 0 for b in bars], color=[b[2] for b in bars])
    ax.bar_label(drawn, labels=[f"{(b[1] or 0):,.0f}" for b in bars], fontsize=8, padding=2)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=6.5)
    ax.set_title("Tokens and connections per second vs the database's limit", fontsize=10)
    ax.set_ylabel("per second", fontsize=9)
    ax.margins(y=0.15)

    r = result["ratios"]
    m = result["machine"]
    fig.suptitle(
        "Generated app (python-socketio on Tornado) vs Node.js socket.io 4 — "
        f"python/node deliveries/s at 1000: {fmt(r.get('fanout_deliveries_per_s_1000'), 3)}, "
        f"at 100: {fmt(r.get('fanout_deliveries_per_s_100'), 3)}; "
        f"memory/idle conn node/python: {fmt(r.get('memory_per_idle_connection_1000'), 3)}\n"
        f"{result['generated_at']}, {result['mode']} mode, medians of {result['config']['runs']} "
        f"run(s); {m['cores']} cores, Python {m['python']}, Node {m['node']}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def update_readme(table: str, output: str) -> None:
    if not README.exists():
        return
    text = README.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start not in text or end not in text:
        return
    block = f"{start}\n![benchmark chart](results/{output}.png)\n\n{table}{end}"
    text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    README.write_text(text)


# ---------------------------------------------------------------------------- main


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 12000:
        log(f"warning: open-file limit {soft}; 5,000 sockets need ~10,000 (two ends)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project",
        type=Path,
        default=REPO_DIR / "build" / "bench" / "transom_app",
        help="the generated project, installed in this Python (default build/bench/transom_app)",
    )
    parser.add_argument("--package", default="transom_app", help="its package (the slug)")
    parser.add_argument("--quick", action="store_true", help="1 run, smaller numbers (~2 min)")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3; quick 1)")
    parser.add_argument("--only", help=f"comma list of scenarios to run, out of {', '.join(ORDER)}")
    parser.add_argument(
        "--servers",
        default="python,node",
        help="python,node (default both); lean adds lean_server.py to idle_1000 (an ablation)",
    )
    parser.add_argument("--output", help="results name (default latest; quick: quick)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the python server, e.g. FAST_FANOUT=false",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP/connect concurrency")
    parser.add_argument("--size", type=int, default=120, help="bytes per packet on the wire")
    parser.add_argument(
        "--bursts", type=int, default=3, help="fan-out bursts per run (the run's median counts)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/loadgen to cores")
    parser.add_argument(
        "--database",
        choices=("process", "embedded"),
        default="process",
        help="the python app's SecantusDB: in a process of its own pinned with the server "
        "(default, as mongod in production) or embedded in the app's process",
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--log-dir", type=Path, default=REPO_DIR / "build" / "bench" / "logs")
    args = parser.parse_args()
    if args.only:
        unknown = set(args.only.split(",")) - set(ORDER)
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    if not (BENCH_DIR / "node_modules" / "socket.io").is_dir():
        log("installing the node packages (npm ci)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH_DIR, check=True)
    raise_fd_limit()
    harness = Harness(args)
    mode = "quick" if args.quick else "full"
    config = QUICK if args.quick else FULL
    default_runs = args.runs or (1 if args.quick else 3)
    partial = bool(args.only) or set(args.servers.split(",")) != {"python", "node"}
    output = args.output or ("quick" if args.quick else "partial" if partial else "latest")
    wanted = args.only.split(",") if args.only else ORDER
    wanted_servers = set(args.servers.split(","))
    started = time.monotonic()
    before = loadavg()
    machine = machine_info(harness)
    log(f"{mode} mode, project {harness.project}, pinning {harness.pin}, results {output}")

    plan: list[tuple[int, str, str]] = []
    max_runs = max(
        (config[s].get("runs", default_runs) if not args.runs else args.runs) for s in wanted
    )
    for rep in range(max_runs):
        for scenario in [s for s in ORDER if s in wanted]:
            runs = args.runs or config[scenario].get("runs", default_runs)
            if rep >= runs:
                continue
            kinds = [k for k in SERVERS[scenario] if KINDS[k][0] in wanted_servers]
            if rep % 2 == 1:
                kinds.reverse()
            plan += [(rep, scenario, kind) for kind in kinds]

    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: list[dict[str, Any]] = []
    for i, (rep, scenario, kind) in enumerate(plan, 1):
        params = config[scenario]
        log(f"({i}/{len(plan)}) run {rep + 1}: {scenario} on {kind} {params}")
        t0 = time.monotonic()
        try:
            result = harness.run(scenario, kind, params)
        except Exception as error:  # record it and go on with the next run
            log(f"  FAILED: {error}")
            errors.append(
                {"scenario": scenario, "server": kind, "run": rep + 1, "error": str(error)[:2000]}
            )
            continue
        result["wall_s"] = round(time.monotonic() - t0, 1)
        result["repetition"] = rep + 1
        raw.setdefault(scenario, {}).setdefault(kind, []).append(result)
        log(f"  {one_line(scenario, result)} ({result['wall_s']} s)")

    summary = summarise(raw)
    result: dict[str, Any] = {
        "schema": 1,
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "mode": mode,
        "duration_s": round(time.monotonic() - started, 1),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "machine": machine,
        "config": {
            "runs": default_runs,
            "scenarios": {s: config[s] for s in wanted},
            "concurrency": args.concurrency,
            "packet_bytes": args.size,
            "bursts_per_fanout_run": args.bursts,
            "warmup": "one unmeasured burst of K messages before the measured bursts",
            "quiet_gate": "each burst waits (<= 3 s) for other processes < 0.3 core",
            "undisturbed_other_cpu_max": CALM_OTHER_CPU,
            "python_server_env": {
                **PYTHON_SERVER_ENV,
                **dict(e.split("=", 1) for e in args.server_env),
            },
            "python_server_variants": {
                kind: env for kind, (server, env) in KINDS.items() if server == "python" and env
            },
            "node_server_variants": {
                kind: {"MONGODB_URI": "the database process (db_server.py)", **KINDS[kind][1]}
                for kind in TOKEN_KINDS
                if KINDS[kind][0] == "node"
            },
        },
        **summary,
    }
    result["ratios"] = ratios(summary)
    result["ratio_directions"] = {
        "note": "every ratio is oriented so that higher is better for python",
        **RATIO_DIRECTIONS,
    }
    result["targets"] = targets(
        result["ratios"], result["recovery"], result["config"]["python_server_env"]
    )
    result["errors"] = errors
    result["raw"] = raw

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{output}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS_DIR / f"{output}.md").write_text(table)
    if not args.no_chart:
        try:
            chart(result, RESULTS_DIR / f"{output}.png")
        except ImportError:
            log("matplotlib is not installed: no chart (pip install matplotlib)")
    if output == "latest" and mode == "full" and not partial:
        update_readme(table, output)
    print(table)
    log(f"wrote {json_path} in {result['duration_s']:.0f} s")
    return 1 if errors else 0


def one_line(scenario: str, result: dict[str, Any]) -> str:
    if scenario == "db_limit":
        return (
            f"DB limit: token {result['token']['per_s']:.0f}/s (batched "
            f"{result['token_batched']['per_s']:.0f}/s), handshake "
            f"{result['handshake']['per_s']:.0f}/s, connect {result['connect']['per_s']:.0f}/s "
            f"(batched {result['connect_batched']['per_s']:.0f}/s)"
        )
    if scenario == "tokens":
        return f"{result['per_s']:.0f} tokens/s, p50 {result['latency_ms']['p50']:.1f} ms"
    if result["mode"] == "storm":
        s = result["storm"]
        return (
            f"storm: {s['sockets_recovered']}/{s['sockets']} sockets recovered "
            f"{s['messages_recovered']}/{s['messages_expected']} messages in "
            f"{s['seconds']} s (reconnected in {s['reconnected_s']} s), "
            f"exactly once in order: {s['exactly_once_in_order']} (duplicates "
            f"{s['duplicates']}, gaps {s['lost']}, out of order {s['reordered']}, "
            f"incomplete {s['incomplete_recoveries']}); {s['reconnect_attempts']} attempts, "
            f"{s['connect_errors']} connect errors"
        )
    if result["mode"] == "idle":
        return (
            f"{result['connect']['connections']} sockets at {result['connect']['per_s']:.0f}/s, "
            f"{result['memory']['kb_per_connection']:.1f} KB each"
        )
    f = result["fanout"]
    return (
        f"{f['deliveries_per_s']:,.0f} deliveries/s, p50 {f['latency_ms']['p50']:.0f} ms, "
        f"p99 {f['latency_ms']['p99']:.0f} ms, {f['server_cpu_us_per_delivery']:.1f} µs CPU each, "
        f"exactly once in order: {f['exactly_once_in_order']} "
        f"(connect {result['connect']['per_s']:.0f}/s"
        + (
            f"; subscribe {result['subscribe']['per_s']:.0f}/s, "
            f"{result['subscribe']['presence_events']} presence events)"
            if result.get("subscribe")
            else ")"
        )
    )


if __name__ == "__main__":
    sys.exit(main())
