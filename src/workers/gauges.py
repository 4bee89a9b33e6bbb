"""Lag, pending entries and the outbox backlog, measured from Redis and PostgreSQL at each scrape.

No process keeps these up to date: /metrics reads them where they live when it is asked (XINFO and
XPENDING, as the admin API describes the streams; the outbox count), so they are there whichever
worker is dead, and never older than the scrape. The composition root registers the collector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from app.eventlog.streams import StreamsClient, stream_keys
from app.platform.config import Settings
from workers import outbox
from workers.loop import TRANSIENT
from workers.retention import stream_status

log = logging.getLogger(__name__)
GROUP_GAUGES = (  # in the order of the values totalled per group
    ("orderstream_consumer_lag_events", "Entries not yet delivered to a group"),
    ("orderstream_consumer_pending_entries", "Entries delivered, not acknowledged"),
    ("orderstream_consumer_lag_seconds", "Age of a group's oldest unprocessed entry"),
)


class StreamGauges(Collector):
    """orderstream_relay_backlog_events, and per group orderstream_consumer_lag_events,
    orderstream_consumer_pending_entries and orderstream_consumer_lag_seconds (summed over partitions;
    the age is the oldest). A service that does not answer leaves its series out of that scrape."""

    def __init__(self, settings: Settings, engine: Engine, client: StreamsClient) -> None:
        self.engine, self.client = engine, client
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)

    def collect(self) -> Iterator[Metric]:
        yield from self._backlog()
        yield from self._groups()

    def _backlog(self) -> Iterator[Metric]:
        try:
            with self.engine.connect() as conn:
                backlog = outbox.backlog(conn)
        except TRANSIENT as exc:
            log.warning("no outbox backlog for this scrape: %s", exc)
            return
        yield GaugeMetricFamily("orderstream_relay_backlog_events", "Outbox events not yet published", value=backlog)

    def _groups(self) -> Iterator[Metric]:
        totals: dict[str, tuple[int, int, float]] = {}
        try:
            for key in self.keys:
                for group in stream_status(self.client, key)["groups"]:
                    lag, pending, age = totals.get(group["name"], (0, 0, 0.0))
                    totals[group["name"]] = (lag + group["lag"], pending + group["pending"],
                                             max(age, group["oldest_unprocessed_age_s"]))  # fmt: skip
        except redis.RedisError as exc:
            log.warning("no consumer lag for this scrape: %s", exc)
            return
        families = [GaugeMetricFamily(name, help_, labels=["group"]) for name, help_ in GROUP_GAUGES]
        for name, values in sorted(totals.items()):
            for family, value in zip(families, values, strict=True):
                family.add_metric([name], value)
        yield from families
