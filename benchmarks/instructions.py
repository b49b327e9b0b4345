"""Instructions per connection: a change too small for the timed benchmark, counted.

On the 2-core machines this benchmark runs on, a core's speed moves by up to 2x from
one second to the next (another tenant's work on the same physical core), so a timed
run cannot tell a 5 % change from the machine's mood: the connect rate of the same
code moves ±15 % from run to run. This counts instead what does not move: the CPU
instructions the python server executes for each connection (a socket token and a
handshake, as ``run.py``'s ``idle_1000`` scenario makes them), under valgrind's
callgrind. Runs of the same code agree within ~1.5 % (the counted server is slow and
the database is not, so how many calls share a batch varies a little).

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

``--lean python_lean``, ``python_lean_tornado`` or ``python_lean_tornado_http`` counts
``lean_server.py`` instead: the same job without the frameworks, on Tornado alone, or
on Tornado's HTTP/1 server alone (``run.py``'s kinds).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import KINDS, LEAN_SERVER, LISTENING, Harness, wait_for_line  # noqa: E402

TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)
CONNECTING = re.compile(r"connecting \d+")
CONNECTED = re.compile(r"connected (\d+)/")
LEAN_KINDS = [kind for kind, (server, _) in KINDS.items() if server == "lean"]


def wait_for(
    proc: subprocess.Popen[bytes], path: Path, pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    match = wait_for_line(proc, path, pattern, timeout)
    if match is None:
        tail = path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"no {pattern.pattern!r} in {path} (exited, or {timeout} s):\n{tail}")
    return match


def one_run(args: argparse.Namespace, harness: Harness, serial: int) -> dict[str, Any]:
    work = harness.log_dir
    database, uri = harness.start_database(f"instructions-{serial}")
    env = harness.server_env({"MONGODB_URI": uri})
    if args.lean:
        env.update(KINDS[args.lean][1])
    # callgrind_control finds the server by user and host name: the same for both.
    env.setdefault("USER", "bench")
    env.setdefault("LOGNAME", env["USER"])
    logs = {name: work / f"{serial}-{name}.log" for name in ("server", "loadgen")}
    out = work / f"{serial}.callgrind"
    server = loadgen = None
    try:
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--vgdb-prefix={work}/vgdb",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(LEAN_SERVER if args.lean else BENCH_DIR / "python_server.py"),
            ],
            cwd=BENCH_DIR if args.lean else args.project,
            env=env,
            stdout=logs["server"].open("wb"),
            stderr=subprocess.STDOUT,
        )
        match = wait_for(server, logs["server"], LISTENING, 300)
        url = f"http://{match.group(1)}:{match.group(2)}"
        loadgen = subprocess.Popen(
            [
                "node",
                str(BENCH_DIR / "loadgen.mjs"),
                *(
                    "--mode",
                    "idle",
                    "--url",
                    url,
                    "--server",
                    "node-token" if args.lean else "python",
                ),
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

        wait_for(loadgen, logs["loadgen"], CONNECTING, 900)
        counting(True)
        connected = int(wait_for(loadgen, logs["loadgen"], CONNECTED, 1800).group(1))
        counting(False)
        loadgen.wait(timeout=300)
    finally:
        if loadgen is not None:
            harness.stop_process(loadgen)
        if server is not None:
            # valgrind writes its file as the server exits, which a slow server does slowly
            harness.stop_process(server, grace=120)
        harness.stop_process(database)
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
    parser.add_argument(
        "--lean",
        choices=LEAN_KINDS,
        help="count this kind of lean_server.py (run.py's KINDS) instead of the app",
    )
    args = parser.parse_args()
    args.project = args.project.resolve()
    args.log_dir = Path(tempfile.mkdtemp(prefix="instructions-"))
    args.no_pin = False  # the database on core 0 as in run.py (counts do not depend on it)
    for tool in ("valgrind", "callgrind_control", "node"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install valgrind; node 18+)", file=sys.stderr)
            return 2
    harness = Harness(args)
    runs = [one_run(args, harness, serial) for serial in range(args.runs)]
    per_connection = [round(r["instructions"] / r["connections"]) for r in runs]
    print(
        json.dumps(
            {
                "clients": args.clients,
                "server_env": args.server_env,
                **({"lean": args.lean} if args.lean else {}),
                "instructions_per_connection": statistics.median(per_connection),
                "runs": per_connection,
                **({"files": str(args.log_dir)} if args.keep else {}),
            }
        )
    )
    if not args.keep:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
