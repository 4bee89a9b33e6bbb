"""The consumer-group runner: feeds a projection from the partition streams, exactly once in effect.

- Entries are applied in one transaction per batch (workers/checkpoints.py) and acknowledged only
  after it committed: a crash before leaves them pending.
- A restarted consumer first finishes its own pending entries. Every consumer keeps a heartbeat key
  alive (workers/liveness.py); the entries of one whose key expired (killed, frozen, cut off) are
  taken over by the others within seconds, and its name is removed from the group. A consumer that
  is merely slow keeps its key, and its entries. As a fallback, any entry pending longer than
  `claim_idle_ms` is claimed by a live consumer (XAUTOCLAIM).
- A batch is applied in one go (the projection's `apply`). One that fails for a reason other than a
  lost connection is retried entry by entry, each as a batch of one, so one poison entry cannot hold
  back the others. The poison entry stays pending and is claimed again after
  `claim_idle_ms` (the backoff); after `max_deliveries` it goes to the dead letters.
- A missing group or stream (Redis lost its data) is recreated from the start; the relay republishes
  whatever Redis lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from contextlib import suppress
from typing import Any

import psycopg
import redis
import sqlalchemy.exc
from sqlalchemy import Engine, text
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.eventlog.store import count_events
from app.eventlog.streams import StreamsClient, consumer_key, dead_letter_key, decode_entry, stream_keys
from app.platform.config import Settings
from app.platform.db import TRANSIENT_DB_ERRORS, pipelined_transaction
from app.platform.logs import event_context
from app.platform.metrics import DEAD_LETTERS, ENTRIES_TAKEN_OVER, EVENTS_APPLIED
from workers import deadletters, liveness
from workers.checkpoints import apply_batch
from workers.replay import Progress, replay

log = logging.getLogger(__name__)
TRANSIENT = (*TRANSIENT_DB_ERRORS, redis.ConnectionError, redis.TimeoutError)
Entry = tuple[str, str, dict[Any, Any]]  # stream key, entry id, fields as Redis gave them (bytes)


class ConsumerGroupRunner:
    """One consumer of one projection's group, reading every partition stream."""

    def __init__(
        self,
        settings: Settings,
        projection: Projection,
        engine: Engine,
        redis_client: StreamsClient,
        consumer: str,
        stop: threading.Event,
    ) -> None:
        self.settings, self.projection, self.engine, self.redis = settings, projection, engine, redis_client
        self.consumer, self.stop = consumer, stop
        self.keys = stream_keys(settings.key_prefix, settings.stream_partitions)
        self.claim_from = dict.fromkeys(self.keys, "0-0")
        self.next_claim = time.monotonic() + settings.claim_idle_ms / 1000
        self.next_takeover = 0.0
        self.heartbeat = liveness.Heartbeat(
            redis_client, self._heartbeat_key(consumer), settings.consumer_heartbeat_ms
        )  # started by run()
        self.catch_up_unknown = False
        self.linger_next = False  # the last batch says events arrive faster than one per round

    @property
    def group(self) -> str:
        return self.projection.name

    def run(self) -> None:
        """Until stopped, with a heartbeat: finish our own pending entries, then read new ones, take
        over those of dead consumers and claim stale ones."""
        self.heartbeat.start()
        try:
            self._run()
        finally:  # beating until the last batch is acknowledged: nobody takes it over meanwhile
            if self.heartbeat.close():  # (Redis answers: not a stop that waits on an outage)
                self._leave_group()

    def _run(self) -> None:
        backoff = 0.1
        while not self.stop.is_set():
            try:
                self.heartbeat.beat()  # before any read: a consumer in the group without its key looks dead
                self.ensure_groups()
                self.drain_own_pending()
                while not self.stop.is_set():
                    self.step()
                    if time.monotonic() >= self.next_takeover:
                        self.take_over_dead()
                    if time.monotonic() >= self.next_claim:
                        self.claim_stale()
                        if self.catch_up_unknown:
                            self.ensure_groups()
                    backoff = 0.1
            except TRANSIENT as exc:
                if isinstance(exc, redis.RedisError):
                    self.heartbeat.disturbed()  # whose keys expired meanwhile is not known: wait and see
                log.warning("%s lost a connection (%s); retrying in %.1fs", self.consumer, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # nothing is lost (unacknowledged entries stay pending): log, back off, go on
                if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                    log.warning("%s: group %s is gone (Redis lost data?); recreating it", self.consumer, self.group)
                    self.heartbeat.disturbed()
                    continue
                log.exception("%s failed; retrying in %.1fs", self.consumer, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def ensure_groups(self) -> None:
        """Create the group on every partition stream where it is missing, and fill a new projection.

        A projection that has never completed a catch-up (projection_catchups) is new: its group
        starts at the streams' end and its history comes from the event store (streams are trimmed;
        the log is whole). An interrupted catch-up runs again (checkpoints make it idempotent).
        Otherwise a missing group was lost with Redis's data and starts from the beginning.
        """
        missing = [key for key in self.keys if not self._has_group(key)]
        try:
            caught_up = self._caught_up()
            self.catch_up_unknown = False
        except TRANSIENT:
            if missing:
                raise  # where a new group starts depends on it: wait for PostgreSQL
            self.catch_up_unknown = True  # the groups exist: consume (entries stay pending), ask again later
            return
        for key in missing:
            try:
                self.redis.xgroup_create(key, self.group, id="0" if caught_up else "$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        if not caught_up:
            self.catch_up_from_log()

    def _has_group(self, key: str) -> bool:
        try:
            return any(_text(group["name"]) == self.group for group in self.redis.xinfo_groups(key))
        except redis.ResponseError:  # no such key
            return False

    def _caught_up(self) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM projection_catchups WHERE projection = :p"), {"p": self.group}
            ).first()
        return found is not None

    def catch_up_from_log(self) -> None:
        """Fill the projection from the whole event store (one consumer does it; the rest go live)."""
        with self.engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.projection.lock_key + 1}).scalar():
                return
            try:
                progress = Progress(total=count_events(conn))
                log.info("%s: new projection %s, replaying %d events", self.consumer, self.group, progress.total)
                replay(self.engine, self.projection, progress, on_poison=self._dead_letter_from_log)
                EVENTS_APPLIED.labels(self.group).inc(progress.done)
                with self.engine.begin() as done:
                    done.execute(
                        text("INSERT INTO projection_catchups (projection) VALUES (:p) ON CONFLICT DO NOTHING"),
                        {"p": self.group},
                    )
                log.info(
                    "%s caught up in %s (%d events, %.0f/s)", self.group, self.consumer, progress.done, progress.rate
                )
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.projection.lock_key + 1})
                conn.commit()

    def drain_own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart and never acknowledged.
        Stops when a batch acknowledges nothing: what still fails is retried by claim_stale later."""
        while not self.stop.is_set() and self.process(self._read("0")):
            pass

    def step(self) -> int:
        """Read and process one batch of new entries; returns how many it acknowledged.

        When events arrive faster than one per round (the last batch held several, but did not fill
        the batch size), wait the linger first: the next read then carries more events for the same
        round trips. A batch of one means they arrive slower than we apply them: read at once.
        An idle read blocks half a heartbeat at most, so that the run loop looks for dead consumers
        that often (a death is then noticed within half a beat of its key expiring).
        """
        if self.linger_next:
            self.stop.wait(self.settings.batch_linger_ms / 1000)
        block = min(self.settings.consumer_block_ms, max(1, self.settings.consumer_heartbeat_ms // 2))
        handled = self.process(self._read(">", block=block))
        self.linger_next = 1 < handled < self.settings.consumer_batch_size
        return handled

    def take_over_dead(self) -> int:
        """Claim and apply the pending entries of the group's consumers whose heartbeat stopped, and
        remove those from the group once they hold nothing; returns how many entries it acknowledged."""
        self.next_takeover = time.monotonic() + self.settings.consumer_heartbeat_ms / 2000
        listed = liveness.consumers(self.redis, self.keys, self.group)
        others = {self._heartbeat_key(name): name for names in listed.values() for name in names}
        dead = {others[key] for key in liveness.dead(self.heartbeat, others)}
        return sum(
            self._take_over(key, name, pending)
            for key, names in listed.items()
            for name, pending in sorted(names.items())
            if name in dead
        )

    def _take_over(self, key: str, dead: str, pending: int) -> int:
        handled = 0
        if pending:
            log.warning("%s: consumer %s stopped its heartbeat; taking over its %d pending entries of %s",
                        self.consumer, dead, pending, key)  # fmt: skip
        while pending and not self.stop.is_set():
            batch = self.settings.consumer_batch_size
            # The idle guard: an entry delivered within the last beat was not left behind by the dead.
            entries = liveness.claim(
                self.redis, key, self.group, dead, self.consumer, batch, self.settings.consumer_heartbeat_ms
            )
            ENTRIES_TAKEN_OVER.labels(self.group).inc(len(entries))
            handled += self.process([(key, entries)])
            if len(entries) < batch:
                break
        if liveness.retire(self.redis, key, self.group, dead):
            log.info("%s: removed dead consumer %s from group %s of %s", self.consumer, dead, self.group, key)
        return handled

    def _heartbeat_key(self, consumer: str) -> str:
        return consumer_key(self.settings.key_prefix, self.group, consumer)

    def _leave_group(self) -> None:
        """After a clean stop, take our name off every stream's group if we hold nothing pending."""
        for key in self.keys:
            with suppress(redis.RedisError):
                liveness.retire(self.redis, key, self.group, self.consumer)

    def claim_stale(self) -> int:
        """Take over entries pending longer than claim_idle_ms (a dead consumer's, or a failing one)."""
        self.next_claim = time.monotonic() + self.settings.claim_idle_ms / 2000
        handled = 0
        for key in self.keys:
            response = self.redis.xautoclaim(
                key,
                self.group,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=self.claim_from[key],
                count=self.settings.consumer_batch_size,
            )
            self.claim_from[key] = response[0]
            entries = [(entry_id, fields) for entry_id, fields in response[1] if entry_id is not None]
            handled += self.process([(key, entries)])
        return handled

    def _read(self, last_id: str, block: int | None = None) -> Any:
        if isinstance(self.redis, redis.RedisCluster):
            return self._read_each(last_id, block)
        return self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.keys, last_id),
            count=self.settings.consumer_batch_size,
            block=block,
        )

    def _read_each(self, last_id: str, block: int | None) -> Any:
        """On Redis Cluster the partitions live in different slots, and one XREADGROUP may name keys
        of one slot only: read each partition without blocking, and pause briefly when all are empty."""
        response: list[Any] = []
        for key in self.keys:
            response += self.redis.xreadgroup(
                self.group, self.consumer, {key: last_id}, count=self.settings.consumer_batch_size
            ) or []  # fmt: skip
        if block and not any(entries for _key, entries in response):
            self.stop.wait(min(block, 20) / 1000)
        return response

    def process(self, response: Any) -> int:
        """Apply a batch in one transaction and acknowledge it; on failure, entry by entry.
        Returns how many entries it acknowledged."""
        entries: list[Entry] = [
            (_text(key), _text(entry_id), fields) for key, batch in response or [] for entry_id, fields in batch
        ]
        if not entries:
            return 0
        try:
            self._commit([decode_entry(fields) for _key, _id, fields in entries])
            done = entries
        except TRANSIENT:
            raise
        except Exception:
            log.warning("%s: a batch of %d failed; applying it entry by entry", self.consumer, len(entries))
            done = self._one_by_one(entries)
        self._ack(done)
        return len(done)

    def _one_by_one(self, entries: list[Entry]) -> list[Entry]:
        done = []
        for entry in entries:
            key, entry_id, fields = entry
            try:
                self._commit([decode_entry(fields)])
                done.append(entry)
            except TRANSIENT:
                self._ack(done)
                raise
            except Exception as exc:
                attempts = self._deliveries(key, entry_id)
                if attempts >= self.settings.max_deliveries:
                    self._dead_letter(entry, exc, attempts)
                    done.append(entry)
                else:
                    log.warning(
                        "%s: entry %s of %s failed (delivery %d of %d; retried after %d ms): %r",
                        self.consumer, entry_id, key, attempts, self.settings.max_deliveries,
                        self.settings.claim_idle_ms, exc,
                    )  # fmt: skip
        return done

    @retry(
        # deadlock, serialization, lost link (through SQLAlchemy or straight from psycopg)
        retry=retry_if_exception_type((sqlalchemy.exc.OperationalError, psycopg.OperationalError)),
        wait=wait_random_exponential(multiplier=0.05, max=1),
        stop=stop_after_attempt(3),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "retrying a batch after %r", state.outcome.exception() if state.outcome else None
        ),
    )
    def _commit(self, events: list[RecordedEvent]) -> None:
        """One transaction; pipelined where the projection allows it (its writes, the checkpoints'
        move and the COMMIT then cost one round trip together, not one each)."""
        with pipelined_transaction(self.engine) if self.projection.pipelined else self.engine.begin() as conn:
            applied = apply_batch(conn, self.projection, events)
        EVENTS_APPLIED.labels(self.group).inc(applied)
        if log.isEnabledFor(logging.DEBUG):
            for event in events:
                log.debug(
                    "event processed",
                    extra={"projection": self.group, "event_id": event.event_id, "stream_id": event.stream_id,
                           "version": event.version, **event_context(event.metadata)},
                )  # fmt: skip

    def _deliveries(self, key: str, entry_id: str) -> int:
        pending = self.redis.xpending_range(key, self.group, min=entry_id, max=entry_id, count=1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def _dead_letter(self, entry: Entry, exc: Exception, attempts: int) -> None:
        key, entry_id, raw = entry
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            event: RecordedEvent | None = decode_entry(fields)
        except Exception:
            event = None
        error = f"{type(exc).__name__}: {exc}"
        DEAD_LETTERS.labels(self.group).inc()
        with self.engine.begin() as conn:
            letter = deadletters.record(conn, self.group, key, entry_id, fields, event, error, self.consumer, attempts)
        copy: dict[Any, Any] = {
            **fields,
            "dead_letter_id": letter,
            "projection": self.group,
            "stream": key,
            "entry_id": entry_id,
            "error": error[:1000],
            "consumer": self.consumer,
            "attempts": attempts,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.redis.xadd(dead_letter_key(self.settings.key_prefix), copy)
        context = event_context(event.metadata) if event else {}
        log.error("%s: dead-lettered %s %s after %d deliveries: %s", self.consumer, key, entry_id, attempts, error,
                  extra={"dead_letter_id": letter, **context})  # fmt: skip

    def _dead_letter_from_log(self, event: RecordedEvent, exc: Exception) -> None:
        """An event that fails while a new projection replays the log: recorded like a stream entry's."""
        entry = ("event-store", f"position-{event.position}", {"envelope": json.dumps(event.to_json())})
        self._dead_letter(entry, exc, attempts=1)

    def _ack(self, entries: list[Entry]) -> None:
        ids: dict[str, list[str]] = defaultdict(list)
        for key, entry_id, _fields in entries:
            ids[key].append(entry_id)
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            for key, entry_ids in ids.items():
                pipe.xack(key, self.group, *entry_ids)
            pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
