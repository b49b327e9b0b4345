"""The MongoDB client, the database handle and index creation.

The app chooses the driver: ``connect`` takes its client class, PyMongo's
``AsyncMongoClient`` or Motor's ``AsyncIOMotorClient``. Everything else talks to
``Database`` and
``Collection`` through the methods both drivers share (``find_one``,
``insert_one``, ``find_one_and_delete``...), and catches ``pymongo.errors``,
which both drivers raise.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

__all__ = ["Client", "IndexSpec", "connect", "now"]

# Either driver's objects: both offer the methods used here, with the same arguments.
Client = Any
Database = Any
Collection = Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSpec:
    """An index a module needs; created (idempotently) at start-up."""

    collection: str
    keys: Sequence[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


def now() -> dt.datetime:
    """The current UTC time at BSON's millisecond precision, so a document returned
    right after an insert equals the one read back later."""
    moment = dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def connect(
    uri: str, timeout_ms: int, *, client_class: type = AsyncMongoClient, appname: str = "transom"
) -> Client:
    """Create the process's client. It connects lazily, on first use.

    The timeouts bound how long a request waits when the database is down, so
    callers answer 503 quickly instead of hanging.
    """
    return client_class(
        uri,
        tz_aware=True,
        appname=appname,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
    )


async def close(client: Client) -> None:
    """Close either driver's client (PyMongo's ``close`` is a coroutine, Motor's is not)."""
    closing = client.close()
    if inspect.isawaitable(closing):
        await closing


async def ping(database: Database) -> None:
    """Raise a ``pymongo.errors.PyMongoError`` if the database does not answer."""
    await database.command("ping")


async def ensure_indexes(database: Database, specs: Iterable[IndexSpec]) -> None:
    """Create every index in ``specs``.

    If an index exists with other options (a TTL changed, say), it is dropped and
    created again with the new ones: index definitions live in code, not in the
    database.
    """
    for spec in specs:
        collection = database[spec.collection]
        try:
            await collection.create_index(list(spec.keys), **spec.options)
        except OperationFailure as error:
            if error.code not in (85, 86):  # IndexOptionsConflict, IndexKeySpecsConflict
                raise
            name = spec.options.get("name") or "_".join(f"{k}_{d}" for k, d in spec.keys)
            log.warning("recreating index %s.%s with new options", spec.collection, name)
            await collection.drop_index(name)
            await collection.create_index(list(spec.keys), **spec.options)
