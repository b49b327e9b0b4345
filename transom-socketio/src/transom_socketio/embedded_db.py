"""The embedded database for development and tests (SecantusDB, started in-process).

SecantusDB speaks the MongoDB wire protocol on a loopback port, so the app talks
to it with the same driver and code as to a real ``mongod``. It is a dev/test
dependency (GPL-2.0), installed by the ``dev`` extra and never used in production.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO, Protocol

from .config import ConfigError

log = logging.getLogger(__name__)

IN_MEMORY = ":memory:"
# Folders this process has locked (a restart in the same process keeps its lock).
_LOCKED: dict[Path, IO[str]] = {}


class EmbeddedServer(Protocol):
    @property
    def uri(self) -> str: ...

    client_idle_timeout_s: float

    def stop(self) -> None: ...


def start_embedded_database(
    storage: Path | str, ttl_sweep_seconds: float = 60.0, port: int = 0
) -> EmbeddedServer:
    """Start SecantusDB on a loopback port; ``storage`` is a folder or ``":memory:"``.

    ``port=0`` picks a free port. Starting again on the port of a stopped server, with
    the same ``storage`` folder, is a database restart (the outage tests do that).

    It runs as a standalone server, as ``mongo:8`` does in ``compose.yaml``, not as
    SecantusDB's default one-member replica set: the app uses no transactions nor
    change streams, and a replica set writes every insert and delete to an oplog too
    (kept for an hour, up to 100,000 entries), ~20 % of the database's CPU per socket
    token issued and consumed (``benchmarks/README.md``).
    """
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise ConfigError(
            "MONGODB_URI is unset and the embedded database is not installed: "
            "run pip install -e '.[dev]' or set MONGODB_URI"
        ) from None
    if storage != IN_MEMORY:
        private_folder(Path(storage))
        lock_folder(Path(storage))
    logging.getLogger("secantus").setLevel(logging.WARNING)
    server = SecantusDBServer(
        host="127.0.0.1",
        port=port,
        storage_path=str(storage),
        ttl_sweep_seconds=ttl_sweep_seconds,
        replica_set_name=None,  # standalone, as in production: no oplog
    )
    server.start()
    where = "in memory" if storage == IN_MEMORY else f"in {storage}"
    log.info("embedded database (SecantusDB) listening on %s, data %s", server.uri, where)
    return server


def client_uri(server: EmbeddedServer) -> str:
    """The URI the app connects to the embedded server with.

    Retryable writes are off: one in-process node has no failover to retry across,
    and SecantusDB keeps a record of every retryable write that it scans on each new
    one, so with them every write would cost a little more memory and CPU than the last.
    Without them a write is not retried on a pooled connection the server has closed
    for being idle, so the pool lets idle connections go at half the server's limit.
    """
    max_idle_ms = int(server.client_idle_timeout_s * 1000 / 2)
    return f"{server.uri}?retryWrites=false&maxIdleTimeMS={max_idle_ms}"


def private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed, readable by this user only: the
    database's files hold password hashes and the development outbox's live links. A
    folder that cannot be made is one line naming DATA_DIR."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)
    except OSError as error:
        raise ConfigError(
            f"DATA_DIR: cannot use {folder} for the database ({error.strerror or error})"
        ) from None


def lock_folder(folder: Path) -> None:
    """Hold an exclusive lock on ``folder`` for the life of this process, or raise
    ConfigError: a second app on the same DATA_DIR stops with one line instead of
    the storage engine's traceback. The operating system releases the lock when
    the process ends, however it ends."""
    folder = folder.resolve()
    if folder in _LOCKED:
        return
    handle = (folder / ".lock").open("a")
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"DATA_DIR: the database folder {folder} is in use by another process "
            "(is the app already running? stop it, or set another DATA_DIR)"
        ) from None
    _LOCKED[folder] = handle
