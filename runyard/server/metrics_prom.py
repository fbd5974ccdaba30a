"""Prometheus metrics on a private registry (several apps in one process never collide)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runyard.models import Status
from runyard.store.base import Store


class _StoreCollector(Collector):
    """Gauges read from the database at scrape time, so every replica reports the truth."""

    def __init__(self, store: Store, stale_after_s: Callable[[], float]) -> None:
        self.store = store
        self.stale_after_s = stale_after_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.count_runs_by_status()
        runs = GaugeMetricFamily("runyard_runs", "Runs by status", labels=["status"])
        for status in Status:
            runs.add_metric([status.value], counts.get(status.value, 0))
        yield runs
        yield GaugeMetricFamily("runyard_queue_depth", "Runs waiting in the queue",
                                value=counts.get(Status.QUEUED.value, 0))
        now = time.time()
        workers = self.store.list_workers()
        alive = sum(1 for w in workers if now - w["last_seen_at"] <= self.stale_after_s())
        yield GaugeMetricFamily("runyard_workers_alive",
                                "Workers seen within stale_after_s", value=alive)
        yield GaugeMetricFamily("runyard_workers", "Registered workers", value=len(workers))


class ServerMetrics:
    """The counters and histograms the routes update, and the text exposition."""

    def __init__(self, store: Store, stale_after_s: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(store, lambda: stale_after_s))
        self.claim_latency = Histogram(
            "runyard_claim_seconds", "Time to answer a worker's claim",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry)
        self.claims = Counter("runyard_claims", "Claims answered", ["outcome"],
                              registry=self.registry)
        self.metric_points = Counter("runyard_metric_points_ingested",
                                     "Metric points received", registry=self.registry)
        self.http_requests = Counter("runyard_http_requests", "HTTP requests",
                                     ["method", "route", "status"], registry=self.registry)
        # By route template, so an operator sees the server's own p99 per endpoint under load.
        self.http_duration = Histogram(
            "runyard_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.uploaded_bytes = Counter("runyard_artifact_bytes_uploaded",
                                      "Artifact bytes received", registry=self.registry)
        self.sse_polls = Counter("runyard_sse_polls",
                                 "Database polls of the event streams' shared poller",
                                 registry=self.registry)
        self.sse_subscribers = Gauge("runyard_sse_subscribers", "Open event streams",
                                     registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
