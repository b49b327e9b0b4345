"""Instructions per connection: a change too small for the timed benchmark, counted.

On the 2-core machines this benchmark runs on, a core's speed moves by up to 2x from
one second to the next (another tenant's work on the same physical core), so a timed
run cannot tell a 5 % change from the machine's mood: the connect rate of the same
code moves ±15 % from run to run. This counts instead what does not move: the CPU
instructions the python server executes for each connection (a socket token and a
handshake, as ``run.py``'s ``idle_1000`` scenario makes them), under valgrind's
callgrind. Two runs of the same code agree to about 0.1 %.

How: the database (``db_server.py``) runs as in the benchmark; the python server runs
under ``valgrind --tool=callgrind`` with its counting off, the load generator signs up
its users and opens ``--clients`` sockets (``loadgen.mjs --mode idle``), and counting
is on only from its ``connecting`` line to its ``connected`` line. Printed: one JSON
object with the instructions per connection of each run and their median.

What it does not count, so read it beside the timed figures, never instead of them:

- the kernel's work (system calls, the TCP stack): a change that saves a ``write``
  saves more than its instructions say;
- time: callgrind runs the server ~50x slower, so its database batches are smaller
  than at full speed (the driver's share per connection is larger), and a
  ``rep stos`` (``memset``) counts one instruction per byte: Tornado zeroes a 64 KB
  read buffer per read, ~9 % of the count, which costs well under 1 % of the time.

Usage (in the bench venv, Debian package ``valgrind`` installed)::

    build/bench/venv/bin/python benchmarks/instructions.py --project build/bench/transom_app \
        [--clients 400] [--users 100] [--runs 1] [--server-env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import DATABASE_LISTENING, LISTENING, PYTHON_SERVER_ENV  # noqa: E402

TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)
CONNECTED = re.compile(r"connected (\d+)/")


def wait_for(
    path: Path, pattern: re.Pattern[str] | str, proc: subprocess.Popen[Any], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited (log {path}):\n{path.read_text()[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no {pattern!r} in {path} within {timeout} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 120) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(args: argparse.Namespace, work: Path, serial: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env.update(PYTHON_SERVER_ENV, PYTHONUNBUFFERED="1", BENCH_APP_PACKAGE=args.package)
    # callgrind_control finds the server by user and host name: the same for both.
    env.setdefault("USER", "bench")
    env.setdefault("LOGNAME", env["USER"])
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    logs = {name: work / f"{serial}-{name}.log" for name in ("database", "server", "loadgen")}
    out = work / f"{serial}.callgrind"
    database = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "db_server.py")],
        cwd=args.project,
        env=env,
        stdout=logs["database"].open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = loadgen = None
    try:
        env["MONGODB_URI"] = wait_for(logs["database"], DATABASE_LISTENING, database, 60).group(1)
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--vgdb-prefix={work}/vgdb",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(BENCH_DIR / "python_server.py"),
            ],
            cwd=args.project,
            env=env,
            stdout=logs["server"].open("wb"),
            stderr=subprocess.STDOUT,
        )
        match = wait_for(logs["server"], LISTENING, server, 300)
        url = f"http://{match.group(1)}:{match.group(2)}"
        loadgen = subprocess.Popen(
            [
                "node",
                str(BENCH_DIR / "loadgen.mjs"),
                *("--mode", "idle", "--url", url, "--server", "python"),
                *("--clients", str(args.clients), "--users", str(args.users)),
                *("--concurrency", str(args.concurrency)),
            ],
            cwd=BENCH_DIR,
            stdout=subprocess.DEVNULL,
            stderr=logs["loadgen"].open("wb"),
        )

        def counting(on: bool) -> None:
            subprocess.run(
                [
                    "callgrind_control",
                    f"--vgdb-prefix={work}/vgdb",
                    *("-i", "on" if on else "off", str(server.pid)),
                ],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        wait_for(logs["loadgen"], r"connecting \d+", loadgen, 900)
        counting(True)
        connected = int(wait_for(logs["loadgen"], CONNECTED, loadgen, 1800).group(1))
        counting(False)
        loadgen.wait(timeout=300)
    finally:
        for proc in (loadgen, server, database):
            if proc is not None:
                stop(proc)
    totals = TOTALS.search(out.read_text(errors="replace"))
    if totals is None or not connected:
        raise RuntimeError(f"no instruction total in {out}")
    return {"connections": connected, "instructions": int(totals.group(1))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True, help="the baked project")
    parser.add_argument("--package", default="transom_app", help="its package (the slug)")
    parser.add_argument("--clients", type=int, default=400, help="connections counted")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the logs and callgrind files")
    args = parser.parse_args()
    args.project = args.project.resolve()
    for tool in ("valgrind", "callgrind_control", "node"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install valgrind; node 18+)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="instructions-"))
    runs = [one_run(args, work, serial) for serial in range(args.runs)]
    per_connection = [round(r["instructions"] / r["connections"]) for r in runs]
    print(
        json.dumps(
            {
                "clients": args.clients,
                "server_env": args.server_env,
                "instructions_per_connection": statistics.median(per_connection),
                "runs": per_connection,
                **({"files": str(work)} if args.keep else {}),
            }
        )
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
