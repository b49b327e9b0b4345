"""The database: this app's driver and the indexes of its collections.

The library's own collections (users, revoked JWTs, throttles) bring their indexes;
the entities bring theirs (``models``). Listed here: the one-time socket tokens.
"""

from __future__ import annotations

{% if cookiecutter.mongo_driver == "pymongo" -%}
from pymongo import AsyncMongoClient as Client
{%- else -%}
from motor.motor_asyncio import AsyncIOMotorClient as Client
{%- endif %}
from transom_socketio import db
from transom_socketio.auth import nonces
from transom_socketio.config import ConfigError

from .settings import Settings

INDEXES = [
    # A socket token is a document of the nonce collection, deleted by the handshake that
    # consumes it; this TTL index makes MongoDB delete the ones nobody used once their
    # expires_at has passed (SOCKET_TOKEN_TTL_SECONDS after issue).
    db.IndexSpec(nonces.COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0}),
]


def connect(settings: Settings) -> db.Client:
    """The process's client ({{ cookiecutter.mongo_driver }}); it connects on first use."""
    if settings.mongodb_uri is None:
        raise ConfigError("MONGODB_URI is unset: start the embedded database first")
    return db.connect(
        settings.mongodb_uri,
        settings.mongodb_timeout_ms,
        client_class=Client,
        appname="{{ cookiecutter.project_slug }}",
    )
