"""The consumer-group runner: feeds a projection from the streams, exactly once in effect.

Redis delivers at least once and spreads a group's entries over its consumers, so two events of one
order can reach two processes, out of order, or twice. For each (projection, order) we keep the last
applied version in `projection_checkpoints`, locked and updated in the same transaction as the
projection's rows:
- version <= checkpoint: a duplicate, skipped;
- version  > checkpoint + 1: a gap (the earlier event is with another consumer or not yet read), so
  the missing events are read from the event store and applied first;
- XACK only after the transaction committed: a crash before it leaves the entries pending.
Checkpoint rows are locked in stream_id order, so two consumers never wait on each other in a cycle.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis
import sqlalchemy.exc
from redis import Redis
from sqlalchemy import Connection, Engine, text
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app import eventstore
from app.config import Settings
from app.events import RecordedEvent
from app.projection import Projection
from app.streams import decode_entry, stream_keys

log = logging.getLogger(__name__)
TRANSIENT = (sqlalchemy.exc.OperationalError, redis.ConnectionError, redis.TimeoutError)


def apply_batch(conn: Connection, projection: Projection, events: Sequence[RecordedEvent]) -> int:
    """Apply the events each projection has not seen, in version order; returns how many were applied."""
    by_stream: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        by_stream[event.stream_id].append(event)
    streams = sorted(by_stream)
    checkpoints = _lock_checkpoints(conn, projection.name, streams)
    applied, moved = 0, []
    for stream_id in streams:
        start = version = checkpoints[stream_id]
        for event in sorted(by_stream[stream_id], key=lambda e: e.version):
            if event.version <= version:
                continue
            gap = eventstore.load(conn, stream_id, version, event.version - 1) if event.version > version + 1 else []
            for e in [*gap, event]:
                projection.apply(conn, e)
                applied += 1
            version = event.version
        if version != start:
            moved.append({"p": projection.name, "s": stream_id, "v": version})
    if moved:
        conn.execute(
            text("UPDATE projection_checkpoints SET version = :v WHERE projection = :p AND stream_id = :s"), moved
        )
    return applied


def _lock_checkpoints(conn: Connection, projection: str, streams: list[str]) -> dict[str, int]:
    conn.execute(
        text(
            "INSERT INTO projection_checkpoints (projection, stream_id, version)"
            " SELECT :p, s, 0 FROM unnest(CAST(:s AS text[])) AS s ORDER BY s ON CONFLICT DO NOTHING"
        ),
        {"p": projection, "s": streams},
    )
    rows = conn.execute(
        text(
            "SELECT stream_id, version FROM projection_checkpoints WHERE projection = :p AND stream_id = ANY(:s)"
            " ORDER BY stream_id FOR UPDATE"
        ),
        {"p": projection, "s": streams},
    )
    return {row.stream_id: row.version for row in rows}


class ConsumerGroupRunner:
    """One consumer of one projection's group, reading every partition stream."""

    def __init__(
        self,
        settings: Settings,
        projection: Projection,
        engine: Engine,
        redis_client: Redis,
        consumer: str,
        stop: threading.Event,
    ) -> None:
        self.settings, self.projection, self.engine, self.redis = settings, projection, engine, redis_client
        self.consumer, self.stop = consumer, stop
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)

    @property
    def group(self) -> str:
        return self.projection.name

    def run(self) -> None:
        """Finish our own pending entries, then read new ones until stopped."""
        while not self.stop.is_set():
            try:
                self.ensure_groups()
                self.drain_own_pending()
                while not self.stop.is_set():
                    self.step()
            except TRANSIENT as exc:
                log.warning("%s lost a connection (%s); retrying in 1s", self.consumer, exc)
                self.stop.wait(1.0)
            except Exception:
                # The batch stays pending (unacknowledged) and is retried from the pending list.
                log.exception("%s failed to apply a batch; it stays pending", self.consumer)
                self.stop.wait(1.0)

    def ensure_groups(self) -> None:
        """Create the group on every partition stream, from the beginning, if it is not there."""
        for key in self.keys:
            try:
                self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def drain_own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart and never acknowledged."""
        while not self.stop.is_set():
            response = self._read("0")
            if not any(entries for _key, entries in response):
                return
            self.process(response)

    def step(self) -> int:
        """Read and process one batch of new entries; returns how many entries it handled."""
        return self.process(self._read(">", block=self.settings.consumer_block_ms))

    def _read(self, last_id: str, block: int | None = None) -> Any:
        return self.redis.xreadgroup(
            self.group,
            self.consumer,
            {key: last_id for key in self.keys},
            count=self.settings.consumer_batch_size,
            block=block,
        )

    def process(self, response: Any) -> int:
        """Apply a batch in one transaction, then acknowledge it."""
        ids: dict[str, list[str]] = defaultdict(list)
        events = []
        for key, entries in response or []:
            for entry_id, fields in entries:
                ids[key.decode() if isinstance(key, bytes) else key].append(entry_id)
                events.append(decode_entry(fields))
        if not events:
            return 0
        self._commit(events)
        pipe = self.redis.pipeline(transaction=False)
        for key, entry_ids in ids.items():
            pipe.xack(key, self.group, *entry_ids)
        pipe.execute()
        return len(events)

    @retry(
        retry=retry_if_exception_type(sqlalchemy.exc.DBAPIError),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        stop=stop_after_attempt(5),
        reraise=True,
    )
    def _commit(self, events: list[RecordedEvent]) -> None:
        with self.engine.begin() as conn:
            apply_batch(conn, self.projection, events)
