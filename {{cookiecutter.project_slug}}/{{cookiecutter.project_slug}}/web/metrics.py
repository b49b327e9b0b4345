"""``GET /metrics``: the Prometheus text exposition of the app's ``Metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import Metrics
from .errors import JsonErrorHandler


class MetricsHandler(JsonErrorHandler):
    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.metrics.exposition())
