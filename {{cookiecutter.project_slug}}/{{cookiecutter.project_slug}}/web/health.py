"""``GET /health``: is the process up and does the database answer?"""

from __future__ import annotations

import asyncio

from pymongo.errors import PyMongoError

from .. import db
from .base import BaseHandler

# Shorter than the client's own timeouts, so a load balancer gets its answer fast.
HEALTH_TIMEOUT_SECONDS = 2.0


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        try:
            await asyncio.wait_for(db.ping(self.services.database), HEALTH_TIMEOUT_SECONDS)
        except (TimeoutError, PyMongoError):
            self.write_json({"status": "unavailable", "mongo": "unreachable"}, status=503)
            return
        self.write_json({"status": "ok", "mongo": "ok"})
