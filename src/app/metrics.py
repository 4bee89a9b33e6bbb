"""Prometheus metrics. With PROMETHEUS_MULTIPROC_DIR set (make run sets it), every process (web
workers, relay, projectors, rq jobs) writes to that directory and one scrape of /metrics sees all."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUEST_SECONDS = Histogram(
    "orderstream_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter("orderstream_events_appended_total", "Events appended to the event store", ["type"])
EVENTS_PUBLISHED = Counter("orderstream_events_published_total", "Events the relay XADDed to the streams")
RELAY_BACKLOG = Gauge(
    "orderstream_relay_backlog_events", "Outbox events not yet published", multiprocess_mode="livemax"
)
EVENTS_APPLIED = Counter("orderstream_events_applied_total", "Events folded into a projection", ["projection"])
CONSUMER_LAG = Gauge(
    "orderstream_consumer_lag_events", "Entries not yet delivered to a group", ["group"], multiprocess_mode="livemax"
)
CONSUMER_PENDING = Gauge(
    "orderstream_consumer_pending_entries",
    "Entries delivered, not acknowledged",
    ["group"],
    multiprocess_mode="livemax",
)
CONSUMER_LAG_SECONDS = Gauge(
    "orderstream_consumer_lag_seconds",
    "Age of a group's oldest unprocessed entry",
    ["group"],
    multiprocess_mode="livemax",
)
DEAD_LETTERS = Counter("orderstream_dead_letters_total", "Entries moved to the dead letters", ["projection"])
REBUILD_PROGRESS = Gauge(
    "orderstream_rebuild_progress_ratio", "Events done / total of a running rebuild", ["projection"],
    multiprocess_mode="livemax",
)  # fmt: skip


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    return REGISTRY


def install_metrics(app: Flask) -> None:
    """Time every request by endpoint, and serve /metrics (public, like a health check)."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        if "started" in g:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            REQUEST_SECONDS.labels(request.method, endpoint, response.status_code).observe(
                time.perf_counter() - g.started
            )
        return response

    @app.get("/metrics")
    def _metrics() -> Response:
        return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)
