"""The outbox relay: publishes committed events to Redis Streams, in order, at least once.

Why an outbox and not a cursor over `events.position`: positions come from a sequence, so a
transaction that took position 41 can commit after one that took 42. A reader tailing by position
would pass 41 and never see it (the "gap" problem). The outbox row is inserted in the event's own
transaction, so a late commit simply shows up later among the unpublished rows.

Only one relay publishes at a time: it holds a session-level PostgreSQL advisory lock on a dedicated
connection. Standbys try the lock every second; if the leader dies, its connection closes, the lock
is released and a standby takes over. A crash between XADD and marking the rows published
republishes a batch; consumers recognise the duplicates by version (see workers/checkpoints.py).

Publishing is all the relay does, and that includes publishing again what Redis lost: when a
stream is gone or behind the newest entry the relay wrote (workers/retention.py), that partition's
retained outbox rows go out again. Keeping Redis and PostgreSQL bounded (trimming, purging) is
upkeep, scheduled apart (workers/upkeep.py); lag is measured where it is read (workers/gauges.py).
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from sqlalchemy import Connection, Engine, text

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.streams import (
    EntryId,
    StreamsClient,
    encode_entry,
    format_entry_id,
    parse_entry_id,
    partition_of,
    stream_keys,
)
from app.platform.config import Settings
from app.platform.db import autocommit
from app.platform.logs import event_context
from app.platform.metrics import EVENTS_PUBLISHED
from workers import outbox
from workers.loop import run_until_stopped
from workers.retention import append_unless_lost, found_lost, lost_entries

log = logging.getLogger(__name__)

LEADER_LOCK = 0x6F7264657273  # "orders": the advisory lock key that makes a relay the leader
CHANNEL = "orderstream_outbox"  # NOTIFYed by a trigger on outbox inserts
LOCK_CHECK_SECONDS = 0.5  # how often a busy leader checks that its lock session is alive


class Relay:
    def __init__(self, settings: Settings, engine: Engine, redis_client: StreamsClient, stop: threading.Event) -> None:
        self.settings, self.engine, self.redis, self.stop = settings, engine, redis_client, stop
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)
        self.poll_seconds = 1.0
        # The newest entry id written to each partition (relay_partitions, kept in step while leading;
        # reloaded at every repair, which runs first thing after taking the lead).
        self.newest_written: dict[int, EntryId] = {}

    def run(self) -> None:
        """Until stopped: become leader, then publish whatever the outbox holds. A failure steps down
        (the lock session closes) and tries again after a backoff (workers/loop.py)."""
        run_until_stopped(self._lead_if_possible, self.stop, "relay")

    def _lead_if_possible(self) -> None:
        with psycopg.connect(
            self.settings.database_url, autocommit=True, connect_timeout=5, application_name=relay_name()
        ) as lock_conn:
            while not self.stop.is_set():
                acquired = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
                if acquired and acquired[0]:
                    break
                self.stop.wait(self.poll_seconds)
            else:
                return
            log.info("relay %s is the leader", relay_name())
            lock_conn.execute(f"LISTEN {CHANNEL}")
            # One connection publishes for the whole term, in autocommit: each statement is atomic alone.
            with autocommit(self.engine) as publisher:
                self._lead(lock_conn, publisher)
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
            log.info("relay released leadership")

    def _lead(self, lock_conn: psycopg.Connection[tuple[object, ...]], publisher: Connection) -> None:
        interval = self.settings.retention_interval_ms / 1000
        next_repair = next_lock_check = 0.0
        linger = self.settings.batch_linger_ms / 1000
        while not self.stop.is_set():
            if time.monotonic() >= next_lock_check:  # a dead session has lost the lock: fail, step down, retry
                lock_conn.execute("SELECT 1")
                next_lock_check = time.monotonic() + LOCK_CHECK_SECONDS
            if time.monotonic() >= next_repair:  # an idle relay would not notice a loss by publishing
                self.repair_lost_streams()
                next_repair = time.monotonic() + interval
            published = self.publish_batch(publisher)
            if published < self.settings.relay_batch_size:
                wait = max(0.0, min(self.poll_seconds, next_repair - time.monotonic()))
                for _ in lock_conn.notifies(timeout=wait, stop_after=1):
                    pass
                if published > 1:  # events came faster than one per round: let a few more commit first
                    self.stop.wait(linger)

    def publish_batch(self, conn: Connection) -> int:
        """XADD the oldest unpublished events (one script per partition, pipelined), then record where
        they went. Returns how many were handled (published, or found lost and queued again).

        Each write is one statement in its own transaction: a crash between the XADD and the record
        only means the batch is published again, which consumers ignore (they apply each version once).
        """
        partitions = self.settings.stream_partitions
        events = eventstore.unpublished(conn, self.settings.relay_batch_size)
        if not events:
            return 0
        targets = [partition_of(partitions, event.stream_id) for event in events]
        by_partition: dict[int, list[RecordedEvent]] = {}
        for event, partition in zip(events, targets, strict=True):
            by_partition.setdefault(partition, []).append(event)
        written = self.newest_written
        pipe = self.redis.pipeline(transaction=False)
        for partition, batch in by_partition.items():
            append_unless_lost(pipe, self.keys[partition], written.get(partition), [encode_entry(e) for e in batch])
        results = pipe.execute(raise_on_error=False)
        rows, lost = [], []
        for (partition, batch), result in zip(by_partition.items(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            if found_lost(result):
                lost.append(partition)
                continue
            rows += [(event.position, partition, parse_entry_id(i)) for event, i in zip(batch, result, strict=True)]
            if log.isEnabledFor(logging.DEBUG):
                for event, entry_id in zip(batch, result, strict=True):
                    log.debug("event published", extra={**_ids(event), "entry_id": entry_id})
        EVENTS_PUBLISHED.inc(len(rows))
        if rows:
            outbox.mark_published(conn, rows)
            for _position, partition, entry_id in rows:
                written[partition] = max(written.get(partition, entry_id), entry_id)
        for partition in lost:  # nothing was added there: its retained events go out again, in order
            count = outbox.republish(conn, partition)
            written.pop(partition, None)
            log.warning("stream %s lost entries: publishing %d retained events again", self.keys[partition], count)
        if lost:  # at once, not at the next notification (the partitions are unrecorded now: no recursion loop)
            return len(events) + self.publish_batch(conn)
        return len(events)

    def repair_lost_streams(self) -> None:
        """Publish again what a partition stream lost (PostgreSQL is the truth)."""
        with self.engine.begin() as conn:
            self.newest_written = outbox.last_published(conn)
            for partition, last_id in list(self.newest_written.items()):
                if lost_entries(self.redis, self.keys[partition], last_id):
                    count = outbox.republish(conn, partition)
                    self.newest_written.pop(partition)
                    log.warning(
                        "stream %s lost entries up to %s: publishing %d retained events again",
                        self.keys[partition],
                        format_entry_id(last_id),
                        count,
                    )


def _ids(event: RecordedEvent) -> dict[str, object]:
    return {"event_id": event.event_id, "stream_id": event.stream_id, "version": event.version,
            **event_context(event.metadata)}  # fmt: skip


def relay_name() -> str:
    """How this relay shows in pg_stat_activity (the admin API reads the leader from there)."""
    from workers.lifecycle import consumer_name

    return f"orderstream-relay:{consumer_name()}"


def current_leader(conn: Connection) -> str | None:
    """The application name of the relay holding the leader lock in this database, if any."""
    return conn.execute(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :objid AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"objid": LEADER_LOCK & 0xFFFFFFFF},
    ).scalar()
