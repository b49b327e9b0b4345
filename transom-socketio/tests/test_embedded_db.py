"""The embedded database, as the app connects to it."""

from __future__ import annotations

import asyncio

import pytest
from secantus import SecantusDBServer

from transom_socketio import db
from transom_socketio.embedded_db import IN_MEMORY, client_uri


@pytest.mark.gen_test(timeout=30)
async def test_a_write_after_the_server_dropped_idle_connections_succeeds():
    # SecantusDB closes connections idle for client_idle_timeout_s (300 s by default);
    # the app's writes are not retried, so its pool must not hand out such a connection.
    server = SecantusDBServer(port=0, storage_path=IN_MEMORY, client_idle_timeout_s=2)
    server.start()
    client = db.connect(client_uri(server), timeout_ms=3000)
    try:
        collection = client["idle"]["docs"]
        await collection.insert_one({"n": 1})
        await asyncio.sleep(3)  # longer than the server lets a connection idle
        await collection.insert_one({"n": 2})
        assert await collection.count_documents({}) == 2
    finally:
        await db.close(client)
        server.stop()
