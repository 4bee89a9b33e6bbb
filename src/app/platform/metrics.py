"""Prometheus metrics. With PROMETHEUS_MULTIPROC_DIR set (make run sets it), every process (web
workers, relay, projectors, rq jobs) writes to that directory and one scrape of /metrics sees all.

Label values come from closed sets only (methods we know, route templates, event types, projection
names), never from what a client sends. Counters whose label sets are known start at zero, so an
`increase()` alert sees the first dead letter. Live gauges of processes that have exited (a killed
worker, a finished rq work-horse) are dropped at the next scrape.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
from flask import Flask, Response, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")

REQUEST_SECONDS = Histogram(
    "orderstream_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter("orderstream_events_appended_total", "Events appended to the event store", ["type"])
EVENTS_PUBLISHED = Counter("orderstream_events_published_total", "Events the relay XADDed to the streams")
EVENTS_APPLIED = Counter("orderstream_events_applied_total", "Events folded into a projection", ["projection"])
DEAD_LETTERS = Counter("orderstream_dead_letters_total", "Entries moved to the dead letters", ["projection"])
ENTRIES_TAKEN_OVER = Counter(
    "orderstream_entries_taken_over_total",
    "Pending entries claimed from consumers whose heartbeat stopped",
    ["projection"],
)
REBUILD_PROGRESS = Gauge(
    "orderstream_rebuild_progress_ratio", "Events done / total of a running rebuild", ["projection"],
    multiprocess_mode="livemax",
)  # fmt: skip


def registry(collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """Every process's series (the multiprocess directory's files, when there is one) and `collectors`."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    collected = CollectorRegistry(auto_describe=False)  # (registering does not run a collection)
    if directory:
        forget_exited_processes(Path(directory))
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    else:
        collected.register(REGISTRY)  # this process's own series (a registry is a collector too)
    for collector in collectors:
        collected.register(collector)
    return collected


def forget_exited_processes(directory: Path) -> None:
    """Drop the live gauges of processes that no longer exist (their counters stay: totals only grow)."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            path.unlink(missing_ok=True)  # another scrape, or gunicorn's child_exit, may be at it too


def forget_process(pid: int, directory: str | None = None) -> None:
    """Drop one exited process's live gauges (prometheus_client's mark_process_dead, but safe when
    two callers remove the same file: a scrape and gunicorn's arbiter, say)."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in Path(directory).glob(f"gauge_live*_{pid}.db"):
            path.unlink(missing_ok=True)


def initialise(event_types: Iterable[str], projections: Iterable[str]) -> None:
    """Create every series of a known label set at zero, so that rates and increases see its first event."""
    for event_type in event_types:
        EVENTS_APPENDED.labels(event_type)
    for projection in projections:
        EVENTS_APPLIED.labels(projection)
        DEAD_LETTERS.labels(projection)
        ENTRIES_TAKEN_OVER.labels(projection)


def install_metrics(
    app: Flask, event_types: Iterable[str] = (), projections: Iterable[str] = (), collectors: Iterable[Collector] = ()
) -> None:
    """Time every request by endpoint, and serve /metrics (public, like a health check) with the
    series of every process and those `collectors` make at each scrape."""
    collectors = tuple(collectors)
    initialise(event_types, projections)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        if "started" in g:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            method = request.method if request.method in METHODS else "other"
            REQUEST_SECONDS.labels(method, endpoint, response.status_code).observe(time.perf_counter() - g.started)
        return response

    @app.get("/metrics")
    def _metrics() -> Response:
        # The text format every Prometheus reads; set as is (mimetype= would add a second charset).
        return Response(generate_latest(registry(collectors)), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
