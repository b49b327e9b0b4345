"""The benchmark's database in a process of its own: SecantusDB, in memory.

``APP_ENV=test`` starts the embedded database inside the app's process, where its
threads share the app's interpreter lock and its event loop's core: a token and a
handshake then measure the database's query execution as much as the app. In
production the app talks to ``mongod`` in another process (``compose.yaml``), over
the same driver, with ``MONGODB_URI``. This script is that other process for the
benchmark: the same SecantusDB, started by the generated package's own
``start_embedded_database`` and reached with its ``client_uri`` (retryable writes
off, the idle limit), so the app's queries and driver settings stay those of the
embedded set-up. ``run.py`` pins it to the server's core, so the app and its
database still share one core, as they did in one process, and Node's server has
that core alone. Its garbage collector is tuned as the app's server tunes its own
(``server.tune_garbage_collector``), which the database had when embedded, and which
``db_limit.py`` gives it when it measures the database's limit.

Usage: python benchmarks/db_server.py (in the bench venv); prints
``database listening on <uri>`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading

from transom_socketio.embedded_db import IN_MEMORY, client_uri, start_embedded_database
from transom_socketio.server import tune_garbage_collector


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = start_embedded_database(IN_MEMORY)
    tune_garbage_collector()
    print(f"database listening on {client_uri(server)}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
