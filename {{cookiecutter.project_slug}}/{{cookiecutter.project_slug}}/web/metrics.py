"""``GET /metrics``: the Prometheus text exposition of the app's ``Metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import Metrics
from .errors import JsonErrorHandler
from .operations import Response, operation


class MetricsHandler(JsonErrorHandler):
    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @operation(
        "Prometheus metrics (text exposition format)",
        operation_id="metrics",
        responses={
            200: Response("the metrics", content_type="text/plain", schema={"type": "string"})
        },
    )
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.metrics.exposition())
