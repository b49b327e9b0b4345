"""Prometheus metrics, served at ``/metrics`` in the text exposition format.

Each app gets its own ``CollectorRegistry`` (tests build many apps in one process).
Every label value comes from a closed set written here, whatever a client sends: a
value outside its set is counted as ``other`` (``ClosedLabels``). So no request can
add a series: an HTTP method is one of ``HTTP_METHODS``, a handler one of the app's
route handler classes (``not_found`` for any other path), a status a number from 100
to 599; a handshake's reason one of ``HANDSHAKE_REASONS``. Never a raw path, method
name, user id or sid. A new label value (a new refusal reason, say) must be added to
its set here, or it is counted as ``other``.
This module depends on no other layer: the realtime layer hands it what it counts
(``watch_deliveries``), and web/metrics.py serves the exposition.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

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

OTHER = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NOT_FOUND = "not_found"  # the handler label of a request no route matched
HANDSHAKE_RESULTS = frozenset({"accepted", "refused"})
HANDSHAKE_REASONS = frozenset(
    {
        "",  # accepted
        "rate_limited",
        "malformed_packet",
        "no_token",
        "invalid_token",
        "too_many_sockets",
        "session_ended",
        "closed",  # the session closed while the handshake waited
        "database_unavailable",
    }
)
EMIT_KINDS = frozenset({"users", "everyone", "channel"})
HTTP_STATUSES = frozenset(str(status) for status in range(100, 600))


class ClosedLabels:
    """A labelled metric whose label values come from closed sets: ``labels(...)`` maps
    any value outside its set to ``other``, so callers cannot grow the exposition.

    Each series is looked up in the metric once, then kept here (Prometheus's own
    ``labels`` checks its arguments and takes a lock on every call, and requests and
    handshakes call this on every one); there are at most as many as the sets allow."""

    def __init__(self, metric: Any, *allowed: frozenset[str]) -> None:
        self._metric = metric
        self._allowed = allowed
        self._series: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        series = self._series.get(values)  # kept under closed values only: any in-set hit
        if series is None:
            pairs = zip(values, self._allowed, strict=True)
            closed = tuple(value if value in ok else OTHER for value, ok in pairs)
            series = self._series.get(closed)
            if series is None:
                series = self._series[closed] = self._metric.labels(*closed)
        return series


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
        self.handshakes = ClosedLabels(
            Counter(
                "socketio_handshakes",
                "Socket.IO handshakes by result and reason.",
                ["result", "reason"],
                registry=self.registry,
            ),
            HANDSHAKE_RESULTS,
            HANDSHAKE_REASONS,
        )
        self.emits = ClosedLabels(
            Counter(
                "socketio_emits",
                "Calls of the message client by kind (users, everyone).",
                ["kind"],
                registry=self.registry,
            ),
            EMIT_KINDS,
        )
        self.emit_recipients = ClosedLabels(
            Counter(
                "socketio_emit_recipients",
                "Users targeted by emitToUsers, sockets of this process by emitToEveryone.",
                ["kind"],
                registry=self.registry,
            ),
            EMIT_KINDS,
        )
        self.socket_tokens_issued = Counter(
            "socket_tokens_issued", "One-time socket tokens issued.", registry=self.registry
        )
        self._request_histogram = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by handler, method and status.",
            ["handler", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self._handlers: frozenset[str] = frozenset()
        self.request_duration = self._request_duration()

    def name_handlers(self, handler_classes: Iterable[type]) -> None:
        """The handler classes of the app's routes: the values of the ``handler`` label
        (a request no route matched is labelled ``not_found``)."""
        self._handlers = frozenset(cls.__name__ for cls in handler_classes)
        self.request_duration = self._request_duration()

    def _request_duration(self) -> ClosedLabels:
        handlers = self._handlers | {NOT_FOUND}
        return ClosedLabels(self._request_histogram, handlers, HTTP_METHODS, HTTP_STATUSES)

    def watch_deliveries(self, manager: DeliveryCounts) -> None:
        """Export the manager's delivery counts (read at scrape time)."""
        self.registry.register(_DeliveriesCollector(manager))

    def observe_request(self, handler: tornado.web.RequestHandler) -> None:
        name = type(handler).__name__
        self.request_duration.labels(
            name if name in self._handlers else NOT_FOUND,
            handler.request.method or "",
            str(handler.get_status()),
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
