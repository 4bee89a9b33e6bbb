"""Lag, pending entries and the outbox backlog, measured from Redis and PostgreSQL at each scrape.

No process keeps these up to date: /metrics reads them where they live when it is asked (XINFO and
XPENDING, as the admin API describes the streams; the outbox counts), so they are there whichever
worker is dead. /metrics is public: a web process measures at most once per CACHE_S and serves
what it measured meanwhile, so scrapes cannot load the servers. The composition root registers the
collector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from app.eventlog.streams import StreamsClient, stream_keys
from app.platform.config import Settings
from workers import outbox
from workers.retention import stream_status

log = logging.getLogger(__name__)
CACHE_S = 2.0
GROUP_GAUGES = (  # in the order of the values totalled per group
    ("orderstream_consumer_lag_events", "Entries not yet delivered to a group"),
    ("orderstream_consumer_pending_entries", "Entries delivered, not acknowledged"),
    ("orderstream_consumer_lag_seconds", "Age of a group's oldest unprocessed entry"),
)


class StreamGauges(Collector):
    """orderstream_relay_backlog_events, orderstream_outbox_retained_events, and per group
    orderstream_consumer_lag_events, orderstream_consumer_pending_entries and
    orderstream_consumer_lag_seconds (summed over partitions; the age is the oldest). A service that
    does not answer, or answers with an error, leaves its series out of that scrape (logged)."""

    def __init__(self, settings: Settings, engine: Engine, client: StreamsClient) -> None:
        self.engine, self.client = engine, client
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)
        self._lock = threading.Lock()  # one measurement at a time per process (gthread workers)
        self._measured: tuple[float, list[Metric]] = (float("-inf"), [])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            at, families = self._measured
            if time.monotonic() - at >= CACHE_S:
                families = [*self._outbox(), *self._groups()]
                self._measured = (time.monotonic(), families)
        yield from families

    def _outbox(self) -> list[Metric]:
        try:
            with self.engine.connect() as conn:
                backlog, retained = outbox.backlog(conn), outbox.retained(conn)
        except Exception as exc:  # not migrated, unreachable...: this scrape goes without them
            log.warning("no outbox counts for this scrape: %s", exc)
            return []
        return [
            GaugeMetricFamily("orderstream_relay_backlog_events", "Outbox events not yet published", value=backlog),
            GaugeMetricFamily(
                "orderstream_outbox_retained_events",
                "Outbox events published and kept until every group acknowledges them and upkeep trims them",
                value=retained,
            ),
        ]

    def _groups(self) -> list[Metric]:
        totals: dict[str, tuple[int, int, float]] = {}
        try:
            for key in self.keys:
                for group in stream_status(self.client, key)["groups"]:
                    lag, pending, age = totals.get(group["name"], (0, 0, 0.0))
                    totals[group["name"]] = (lag + group["lag"], pending + group["pending"],
                                             max(age, group["oldest_unprocessed_age_s"]))  # fmt: skip
        except Exception as exc:  # Redis (or a cluster node) away: this scrape goes without them
            log.warning("no consumer lag for this scrape: %s", exc)
            return []
        families = [GaugeMetricFamily(name, help_, labels=["group"]) for name, help_ in GROUP_GAUGES]
        for name, values in sorted(totals.items()):
            for family, value in zip(families, values, strict=True):
                family.add_metric([name], value)
        return list(families)
