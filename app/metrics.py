"""Prometheus metrics, summed over all worker processes.

`python -m app serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the
workers start, so each worker writes its samples there and `/metrics` adds them up.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("twofold_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "twofold_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSACTIONS = Counter(
    "twofold_transactions", "Transactions answered, by the status they ended in", ["status"]
)
BATCH_JOBS = Histogram(
    "twofold_batch_jobs",
    "Documents per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 8192),
)
BATCH_WAIT_SECONDS = Histogram(
    "twofold_batch_wait_seconds",
    "Longest wait of a document before its group commit started",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
# Per sink, set by the process serving it each time it reads the log; the newest value
# among live processes is shown (a sink moves between processes).
SINK_LAG_EVENTS = Gauge(
    "twofold_sink_lag_events",
    "Events of the tenant's log after the last one the sink took",
    ["tenant", "sink"],
    multiprocess_mode="livemostrecent",
)
SINK_LAG_SECONDS = Gauge(
    "twofold_sink_lag_seconds",
    "Seconds since the commit of the oldest event the sink has yet to take (0: caught up)",
    ["tenant", "sink"],
    multiprocess_mode="livemostrecent",
)
POOL_IN_USE = Gauge(
    "twofold_db_connections_in_use", "Database connections checked out", multiprocess_mode="livesum"
)


def observe_batch(jobs: int, waited_s: float) -> None:
    BATCH_JOBS.observe(jobs)
    BATCH_WAIT_SECONDS.observe(waited_s)


def observe_sink_lag(tenant: str, sink: str, events: int, oldest: datetime | None) -> None:
    """A sink `events` behind the log's head, the oldest of them committed at `oldest`."""
    SINK_LAG_EVENTS.labels(tenant, sink).set(max(events, 0))
    waited = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    SINK_LAG_SECONDS.labels(tenant, sink).set(max(waited, 0.0))


def forget_sink_lag(tenant: str, sink: str) -> None:
    """This process no longer serves the sink."""
    observe_sink_lag(tenant, sink, 0, None)


def count_transactions(*statuses: str) -> None:
    # Once per status: each increment takes a lock (and a file write when multiprocess).
    for status, count in Tally(statuses).items():
        TRANSACTIONS.labels(status).inc(count)


def render(pool_in_use: int) -> tuple[bytes, str]:
    """The exposition text: every worker's samples when multiprocess, else this one's."""
    POOL_IN_USE.set(pool_in_use)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class RequestMetrics:
    """Counts and times every request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("path_template") or "unmatched"
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            REQUEST_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)
