"""Prometheus metrics: requests and latency per route, inference and search time, gallery sizes."""

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
        self.gallery_templates = Gauge(
            "gader_gallery_templates", "Templates in each gallery's index", ["gallery"], registry=self.registry
        )
        self._sizes: Callable[[], dict[str, int]] | None = None

    def watch_galleries(self, sizes: Callable[[], dict[str, int]]) -> None:
        self._sizes = sizes

    def render(self) -> bytes:
        if self._sizes is not None:
            self.gallery_templates.clear()
            for name, size in self._sizes().items():
                self.gallery_templates.labels(gallery=name).set(size)
        return generate_latest(self.registry)
