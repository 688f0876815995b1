"""Prometheus metrics: requests and latency per route, inference and search time, gallery and template counts."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gader_requests_total",
            "Requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gader_request_seconds",
            "Request latency by route",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "gader_inference_seconds",
            "Detector + embedding time per sequence",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "gader_search_seconds", "Gallery search time per query", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        # Totals, not one series per gallery: /metrics answers without a key (Prometheus scrapes it), and
        # gallery names are tenants' own (a key limited to some galleries cannot learn the others' names).
        self.galleries = Gauge("gader_galleries", "Galleries in this replica's index", registry=self.registry)
        self.templates = Gauge(
            "gader_templates", "Templates in all galleries of this replica's index", registry=self.registry
        )
        self._sizes: Callable[[], dict[str, int]] | None = None

    def watch_galleries(self, sizes: Callable[[], dict[str, int]]) -> None:
        self._sizes = sizes

    def render(self) -> bytes:
        if self._sizes is not None:
            sizes = self._sizes()
            self.galleries.set(len(sizes))
            self.templates.set(sum(sizes.values()))
        return generate_latest(self.registry)
