"""Socket.IO rooms shared between processes and hosts through Redis.

python-socketio's ``AsyncRedisManager`` publishes every emit, disconnect and room
change on a Redis channel that every process subscribes to, so
``emitToUsers``/``emitToEveryone`` called in one process reach the sockets held
by all of them. This subclass adds ``disconnect_room`` (logout, disconnectUsers),
which python-socketio only offers per socket id: it travels as an emit of a
reserved event that each process turns into a disconnect of its own sockets in
that room (``RoomManager.emit``), and which is never sent to a client.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import socketio

from .. import jsonutil
from ..config import ConfigError, Settings
from ..metrics import Metrics
from .channels import Channels
from .message_client import MessageClient
from .positions import PositionCodec
from .redis_fail_fast import REDIS_TIMEOUT_SECONDS
from .redis_history import RedisHistory
from .redis_presence import RedisPresence
from .rooms import DISCONNECT_ROOM_EVENT, NAMESPACE, RoomManager

__all__ = ["close_write_only", "write_only_message_client"]

# python-socketio builds its Redis client with redis-py's default pool (its
# ``redis_options`` cannot choose another kind), which fails the 101st call in flight at
# once (MaxConnectionsError); the manager then logs an error, drops its client for a new
# one and publishes again. A burst of emits (a model action over a list, a worker's
# batch) waits here instead, leaving room for the subscriber's connection.
MAX_CONCURRENT_PUBLISHES = 50


class RedisRoomManager(socketio.AsyncRedisManager, RoomManager):
    """python-socketio's Redis manager. Messages that arrive from Redis for this
    process's sockets reach ``RoomManager.emit`` (it comes after the pub/sub layer in
    the MRO), which turns ``DISCONNECT_ROOM_EVENT`` into a local disconnect and hands
    the rest to ``deliver`` (the fast path's, with FAST_FANOUT)."""

    # Another process's logout reaches this one as a message, which is lost if it comes
    # while the subscriber reconnects: handshakes ask the database (realtime/handshake.py).
    records_every_room_end = False

    def __init__(self, url: str, *, channel: str, write_only: bool = False) -> None:
        # jsonutil: the payloads cross Redis as JSON and may hold ObjectIds and datetimes.
        super().__init__(
            url,
            channel=pubsub_channel(url, channel),
            write_only=write_only,
            json=jsonutil,
            # A Redis that does not answer fails an emit after seconds, not minutes. (No
            # read timeout: the subscriber's read blocks for as long as the channel is quiet.)
            redis_options={"socket_connect_timeout": REDIS_TIMEOUT_SECONDS},
        )
        self._publishing = asyncio.Semaphore(MAX_CONCURRENT_PUBLISHES)

    async def disconnect_room(self, room: str, namespace: str = NAMESPACE) -> None:
        await self.emit(DISCONNECT_ROOM_EVENT, None, namespace=namespace, room=room)

    async def emit(self, *args: Any, **kwargs: Any) -> Any:
        """python-socketio's: publish the emit to every process; never more than
        ``MAX_CONCURRENT_PUBLISHES`` at once (see there)."""
        if kwargs.get("ignore_queue"):  # this process's sockets only: nothing published
            return await super().emit(*args, **kwargs)
        async with self._publishing:
            return await super().emit(*args, **kwargs)

    async def close_room(self, room: str, namespace: str | None = None) -> Any:
        async with self._publishing:
            return await super().close_room(room, namespace)


def pubsub_channel(url: str, channel: str) -> str:
    """The pub/sub channel of the deployment on database ``url`` names: REDIS_CHANNEL,
    with the database number after it when it is not 0.

    Redis's pub/sub ignores the database number: two deployments on one Redis server,
    on databases 0 and 1 say, kept their keys apart but heard each other's emits,
    presence and logouts on the one channel name. With database 0 the name is
    REDIS_CHANNEL as it was, so processes of an earlier release still hear these."""
    parts = urlsplit(url)
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    for name, value in parse_qsl(parts.query):
        if name == "db":
            database = value
    return channel if database in ("", "0") else f"{channel}:db{database}"


def write_only_message_client(
    settings: Settings, channels: Channels | None = None
) -> MessageClient:
    """The message client of a process that holds no sockets (a worker, a cron job).

    Its Socket.IO server never serves a request: it only publishes to Redis, and
    the web processes deliver to their sockets. ``channels``: the app's channel
    patterns, for ``emitToChannel``. ConfigError without REDIS_URL: with nothing to
    publish to, every emit would be lost.
    """
    url = settings.redis_url
    if url is None:
        raise ConfigError(
            "REDIS_URL is unset: a process without sockets reaches the web processes "
            "only through Redis"
        )
    manager = RedisRoomManager(url, channel=settings.redis_channel, write_only=True)
    sio = socketio.AsyncServer(async_mode="tornado", client_manager=manager, json=jsonutil)
    presence = RedisPresence(url, settings.redis_channel, settings.presence_heartbeat_seconds)
    history = None
    if settings.recovery_enabled:
        # Only appends: the web processes read the stream and deliver.
        history = RedisHistory(
            sio,
            url,
            settings.redis_channel,
            settings.recovery_retention_seconds,
            settings.recovery_max_messages,
            PositionCodec(settings.jwt_secret, settings.jwt_previous_secret),
        )
    client = MessageClient(sio, Metrics(), presence, history)
    client.channels = channels
    return client


async def close_write_only(client: MessageClient) -> None:
    await client.close()
    redis = client.io.manager.redis
    if redis is not None:
        await redis.aclose()
