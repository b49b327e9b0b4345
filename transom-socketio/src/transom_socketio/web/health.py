"""``GET /health``: is the process up and does the database answer?"""

from __future__ import annotations

import asyncio
from typing import Literal

from pymongo.errors import PyMongoError

from .. import db
from ..shapes import PublicShape
from .base import BaseHandler
from .operations import Response, operation

# Shorter than the client's own timeouts, so a load balancer gets its answer fast.
HEALTH_TIMEOUT_SECONDS = 2.0


class Healthy(PublicShape):
    status: Literal["ok"]
    mongo: Literal["ok"]


class Unhealthy(PublicShape):
    status: Literal["unavailable"]
    mongo: Literal["unreachable"]


class HealthHandler(BaseHandler):
    @operation(
        "Is the process up and does the database answer?",
        operation_id="health",
        responses={
            200: Response("healthy", Healthy),
            503: Response("the database does not answer", Unhealthy),
        },
    )
    async def get(self) -> None:
        try:
            await asyncio.wait_for(db.ping(self.services.database), HEALTH_TIMEOUT_SECONDS)
        except (TimeoutError, PyMongoError):
            self.write_json({"status": "unavailable", "mongo": "unreachable"}, status=503)
            return
        self.write_json({"status": "ok", "mongo": "ok"})
