"""An example background job: a process with no sockets pushing a message to a user.

    python -m {{ cookiecutter.project_slug }}.worker <user id> "the text"

It publishes through Redis (REDIS_URL); the web processes deliver the event to
every socket of that user. The same ``emitToUsers`` / ``emitToEveryone`` /
``emitToChannel`` calls as in the web process: use this pattern in task queues, cron
jobs and scripts.
"""

from __future__ import annotations

import asyncio
import sys

from bson import ObjectId
from transom_socketio import db
from transom_socketio.config import ConfigError
from transom_socketio.realtime.redis_queue import close_write_only, write_only_message_client

from .channels import channels
from .settings import load_settings


async def notify(user_id: str, text: str) -> int:
    client = write_only_message_client(load_settings(), channels)
    try:
        payload = {
            "_id": ObjectId(),
            "text": text,
            "author": {"_id": None, "username": "worker"},
            "to": user_id,
            "created_at": db.now(),
        }
        return await client.emitToUsers(user_id, "message", payload)
    finally:
        await close_write_only(client)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m {{ cookiecutter.project_slug }}.worker <user id> <text>", file=sys.stderr)
        return 2
    try:
        asyncio.run(notify(argv[0], argv[1]))
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
