"""``GET /metrics``: the Prometheus text exposition of the app's ``Metrics``.

Who may scrape (SECURITY.md, "Metrics"): with ``METRICS_TOKEN`` set, only a request
with ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time; anything
else is 401); without it, anyone in development and test, and nobody in production,
where the route answers 404 as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac

from prometheus_client import CONTENT_TYPE_LATEST

from ..config import Settings
from ..metrics import Metrics
from .errors import ApiError, BodilessHandler
from .operations import Response, operation


def may_scrape(settings: Settings, authorization: str) -> bool | None:
    """True if a request with this ``Authorization`` header may read the metrics, False
    if it must authenticate (401), None if the metrics are not served at all (404)."""
    if settings.metrics_token is None:
        return None if settings.is_production else True
    scheme, _, credentials = authorization.partition(" ")
    # Digests of equal length: the comparison's time says nothing of the token's length.
    given = hashlib.sha256(credentials.strip().encode("utf-8", "surrogatepass")).digest()
    expected = hashlib.sha256(settings.metrics_token.encode()).digest()
    return hmac.compare_digest(given, expected) and scheme.lower() == "bearer"


class MetricsHandler(BodilessHandler):
    def initialize(self, metrics: Metrics, settings: Settings) -> None:
        self.metrics = metrics
        self.app_settings = settings

    @operation(
        "Prometheus metrics (text exposition format)",
        operation_id="metrics",
        description="With METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`; "
        "without it, open in development and test, absent (404) in production.",
        responses={
            200: Response("the metrics", content_type="text/plain", schema={"type": "string"})
        },
        errors={
            401: "`authentication_required`: METRICS_TOKEN is set and the request does not "
            "carry it.",
            404: "`not_found`: production without METRICS_TOKEN serves no metrics.",
        },
    )
    def get(self) -> None:
        allowed = may_scrape(self.app_settings, self.request.headers.get("Authorization", ""))
        if allowed is None:  # the answer to any path without a route
            raise ApiError(404, "not_found", f"no route for {self.request.path}")
        if not allowed:
            raise ApiError(
                401,
                "authentication_required",
                "the metrics need Authorization: Bearer <METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.metrics.exposition())
