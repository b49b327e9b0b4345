"""Prometheus metrics, served at ``/metrics`` in the text exposition format.

Each app gets its own ``CollectorRegistry`` (tests build many apps in one process).
Labels are bounded: routes are handler names, never raw paths or user ids.
This module depends on no other layer: the realtime layer hands it what it counts
(``watch_deliveries``), and web/metrics.py serves the exposition.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import tornado.web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector


class DeliveryCounts(Protocol):
    """What ``watch_deliveries`` reads at scrape time (realtime/fanout.py's manager)."""

    @property
    def delivered_fast(self) -> int: ...

    @property
    def delivered_normal(self) -> int: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_* (memory, CPU, open files) and which process answered the scrape.
        ProcessCollector(registry=self.registry)
        Info("app_process", "The process that served this scrape.", registry=self.registry).info(
            {"pid": str(os.getpid())}
        )
        self.connected_sockets = Gauge(
            "socketio_connected_sockets",
            "Authenticated Socket.IO connections held by this process.",
            registry=self.registry,
        )
        self.handshakes = Counter(
            "socketio_handshakes",
            "Socket.IO handshakes by result and reason.",
            ["result", "reason"],
            registry=self.registry,
        )
        self.emits = Counter(
            "socketio_emits",
            "Calls of the message client by kind (users, everyone).",
            ["kind"],
            registry=self.registry,
        )
        self.emit_recipients = Counter(
            "socketio_emit_recipients",
            "Users targeted by emitToUsers, sockets of this process by emitToEveryone.",
            ["kind"],
            registry=self.registry,
        )
        self.socket_tokens_issued = Counter(
            "socket_tokens_issued", "One-time socket tokens issued.", registry=self.registry
        )
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by handler, method and status.",
            ["handler", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    def watch_deliveries(self, manager: DeliveryCounts) -> None:
        """Export the manager's delivery counts (read at scrape time)."""
        self.registry.register(_DeliveriesCollector(manager))

    def observe_request(self, handler: tornado.web.RequestHandler) -> None:
        self.request_duration.labels(
            type(handler).__name__, handler.request.method, str(handler.get_status())
        ).observe(handler.request.request_time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _DeliveriesCollector(Collector):
    def __init__(self, manager: DeliveryCounts) -> None:
        self._manager = manager

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "socketio_deliveries",
            "Events written to this process's sockets, by path (realtime/accel/fanout.py).",
            labels=["path"],
        )
        family.add_metric(["fast"], self._manager.delivered_fast)
        family.add_metric(["normal"], self._manager.delivered_normal)
        yield family
