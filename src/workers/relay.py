"""The outbox relay: publishes committed events to Redis Streams, in order, at least once.

Why an outbox and not a cursor over `events.position`: positions come from a sequence, so a
transaction that took position 41 can commit after one that took 42. A reader tailing by position
would pass 41 and never see it (the "gap" problem). The outbox row is inserted in the event's own
transaction, so a late commit simply shows up later among the unpublished rows.

Only one relay publishes at a time: it holds a session-level PostgreSQL advisory lock on a dedicated
connection. Standbys try the lock every second; if the leader dies, its connection closes, the lock
is released and a standby takes over. A crash between XADD and marking the rows published
republishes a batch; consumers recognise the duplicates by version (see workers/checkpoints.py).

The leader also keeps Redis bounded and honest (workers/retention.py): it trims each stream, and
forgets outbox rows, only behind every group's acknowledged entry; and when a stream lost entries it
had written, it publishes that partition's retained rows again.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import redis
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
from app.platform.db import TRANSIENT_DB_ERRORS, autocommit
from app.platform.logs import event_context
from app.platform.metrics import CONSUMER_LAG, CONSUMER_LAG_SECONDS, CONSUMER_PENDING, EVENTS_PUBLISHED, RELAY_BACKLOG
from commands import idempotency
from queries.projections import PROJECTIONS
from workers import outbox
from workers.retention import acknowledged_below, lost_entries, stream_status

log = logging.getLogger(__name__)

LEADER_LOCK = 0x6F7264657273  # "orders": the advisory lock key that makes a relay the leader
CHANNEL = "orderstream_outbox"  # NOTIFYed by a trigger on outbox inserts
# Append a batch's entries to one partition stream, unless the stream has lost entries we wrote
# (ARGV[1], the newest id we recorded, or '' if none): then add nothing and answer {'lost'}.
# Check and append are one atomic step, so the evidence of a loss (the stream's last generated id
# behind ours) survives until the relay has queued the lost events again in PostgreSQL; appending
# first would hide it behind new ids. ARGV[2] is the number of fields per entry, then the entries.
APPEND_UNLESS_LOST = """
local expected = ARGV[1]
if expected ~= '' then
    local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
    local last = nil
    if type(info) == 'table' and not info['err'] then
        for i = 1, #info, 2 do
            if info[i] == 'last-generated-id' then last = info[i + 1] end
        end
    end
    if last == nil then return {'lost'} end
    local lms, lseq = string.match(last, '(%d+)-(%d+)')
    local ems, eseq = string.match(expected, '(%d+)-(%d+)')
    lms, lseq, ems, eseq = tonumber(lms), tonumber(lseq), tonumber(ems), tonumber(eseq)
    if lms < ems or (lms == ems and lseq < eseq) then return {'lost'} end
end
local width = tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV, width do
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1))
end
return ids
"""
LOCK_CHECK_SECONDS = 0.5  # how often a busy leader checks that its lock session is alive
TRANSIENT = (*TRANSIENT_DB_ERRORS, redis.ConnectionError, redis.TimeoutError)


class Relay:
    def __init__(self, settings: Settings, engine: Engine, redis_client: StreamsClient, stop: threading.Event) -> None:
        self.settings, self.engine, self.redis, self.stop = settings, engine, redis_client, stop
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)
        self.poll_seconds = 1.0
        # The newest entry id written to each partition (relay_partitions, kept in step while leading;
        # reloaded at every upkeep, which runs first thing after taking the lead).
        self.newest_written: dict[int, EntryId] = {}

    def run(self) -> None:
        """Until stopped: become leader, then publish whatever the outbox holds."""
        backoff = 0.1
        while not self.stop.is_set():
            try:
                self._lead_if_possible()
                backoff = 0.1
            except TRANSIENT as exc:
                log.warning("relay lost a connection (%s); retrying in %.1fs", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a bug must not take the relay down for good: log it, step down, retry
                log.exception("relay failed; stepping down and retrying in %.1fs", backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

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
        next_upkeep = next_lock_check = 0.0
        linger = self.settings.batch_linger_ms / 1000
        while not self.stop.is_set():
            if time.monotonic() >= next_lock_check:  # a dead session has lost the lock: fail, step down, retry
                lock_conn.execute("SELECT 1")
                next_lock_check = time.monotonic() + LOCK_CHECK_SECONDS
            if time.monotonic() >= next_upkeep:
                self.repair_lost_streams()
                self.trim_acknowledged()
                self.report()
                with self.engine.begin() as conn:
                    idempotency.purge_expired(conn)
                next_upkeep = time.monotonic() + interval
            published = self.publish_batch(publisher)
            if published < self.settings.relay_batch_size:
                wait = max(0.0, min(self.poll_seconds, next_upkeep - time.monotonic()))
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
            expected = format_entry_id(written[partition]) if partition in written else ""
            entries = [encode_entry(event) for event in batch]
            flat = [part for entry in entries for field in entry.items() for part in field]
            pipe.eval(APPEND_UNLESS_LOST, 1, self.keys[partition], expected, 2 * len(entries[0]), *flat)
        results = pipe.execute(raise_on_error=False)
        rows, lost = [], []
        for (partition, batch), result in zip(by_partition.items(), results, strict=True):
            if isinstance(result, Exception):
                raise result
            if result and result[0] in (b"lost", "lost"):
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

    def trim_acknowledged(self) -> None:
        """Trim streams and outbox behind the entry every group has acknowledged, never past it."""
        for partition, key in enumerate(self.keys):
            below = acknowledged_below(self.redis, key, self.settings.projections or tuple(PROJECTIONS))
            if below is None:
                continue
            self.redis.xtrim(key, minid=format_entry_id(below), approximate=False)
            with self.engine.begin() as conn:
                outbox.forget_acknowledged(conn, partition, below)

    def report(self) -> None:
        """Backlog, and each group's lag and pending entries, for /metrics (the leader is the one writer)."""
        with self.engine.connect() as conn:
            RELAY_BACKLOG.set(outbox.backlog(conn))
        totals: dict[str, list[float]] = {}
        for key in self.keys:
            for group in stream_status(self.redis, key)["groups"]:
                lag, pending, age = totals.setdefault(group["name"], [0, 0, 0.0])
                totals[group["name"]] = [lag + group["lag"], pending + group["pending"],
                                         max(age, group["oldest_unprocessed_age_s"])]  # fmt: skip
        for name, (lag, pending, age) in totals.items():
            CONSUMER_LAG.labels(name).set(lag)
            CONSUMER_PENDING.labels(name).set(pending)
            CONSUMER_LAG_SECONDS.labels(name).set(age)


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
