"""This process's metrics, in a Prometheus registry of its own (one per app, so tests and
several apps in one process never share counters). Read two ways: scraped as Prometheus text
at GET /metrics, and sampled into the analytics store's ``metrics`` table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import pool_figures

# Seconds; most requests are milliseconds, queries may run up to their time limit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UNMATCHED_ROUTE = "unmatched"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    value: float
    kind: str  # "counter", "gauge" or "histogram"
    tags: Mapping[str, str]


class _Pools(Collector):
    """Connection pool occupancy, read when collected: nothing to keep up to date."""

    def __init__(self) -> None:
        self.engines: dict[str, AsyncEngine] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tablehouse_db_pool_connections",
            "Database connections per pool and state",
            labels=["pool", "state"],
        )
        for pool, engine in self.engines.items():
            for state, value in pool_figures(engine).items():
                family.add_metric([pool, state], value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tablehouse_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tablehouse_http_request_duration_seconds",
            "HTTP request duration by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested_rows = Counter(
            "tablehouse_ingested_rows", "Rows written by ingest", registry=self.registry
        )
        self.ingests_in_progress = Gauge(
            "tablehouse_ingests_in_progress",
            "Row loads under way, those still receiving their body included",
            registry=self.registry,
        )
        self._pools = _Pools()
        self.registry.register(self._pools)
        # Each (route, method, status)'s labelled counter and histogram, looked up once: a
        # ``labels()`` call takes a lock and builds the label tuple on every request. As many
        # entries as the registry has series (the route is a template, never a raw path).
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def watch_pools(self, engines: Mapping[str, AsyncEngine]) -> None:
        self._pools.engines = dict(engines)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        series[0].inc()
        series[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def samples(self) -> list[Sample]:
        """Every current value, histograms as their buckets, sum and count."""
        found = []
        for family in self.registry.collect():
            kind = {"counter": "counter", "histogram": "histogram"}.get(family.type, "gauge")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # prometheus-client's creation timestamps are not measurements
                found.append(Sample(sample.name, float(sample.value), kind, dict(sample.labels)))
        return found
