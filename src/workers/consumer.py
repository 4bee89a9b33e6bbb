"""The consumer-group runner: feeds a projection from the partition streams, exactly once in effect.

- Entries are applied in one transaction per batch (workers/checkpoints.py) and acknowledged only
  after it committed: a crash before leaves them pending.
- A restarted consumer first finishes its own pending entries. Every consumer keeps a heartbeat key
  alive (workers/liveness.py); the entries of one that died are taken over by the others
  (workers/takeover.py), and any entry pending longer than `claim_idle_ms` is claimed (XAUTOCLAIM).
- A batch is applied in one go (the projection's `apply`). One that fails for a reason other than a
  lost connection is retried entry by entry, each as a batch of one, so one poison entry cannot hold
  back the others; after `max_deliveries` it goes to the dead letters (workers/poison.py).
- A missing group or stream (Redis lost its data) is recreated from the start (workers/groups.py);
  the relay republishes whatever Redis lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import psycopg
import redis
import sqlalchemy.exc
from sqlalchemy import Engine
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.eventlog.streams import StreamsClient, consumer_key, decode_entry, stream_keys
from app.platform.config import Settings
from app.platform.db import pipelined_transaction
from app.platform.logs import event_context
from app.platform.metrics import EVENTS_APPLIED
from workers.checkpoints import apply_batch
from workers.groups import Membership
from workers.liveness import Heartbeat
from workers.loop import TRANSIENT, run_until_stopped
from workers.poison import DeadLettering
from workers.replies import Entry, entries
from workers.takeover import Takeover

log = logging.getLogger(__name__)


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
        key = consumer_key(settings.key_prefix, self.group, consumer)
        self.heartbeat = Heartbeat(redis_client, key, settings.consumer_heartbeat_ms)  # started by run()
        self.dead_letters = DeadLettering(settings, engine, redis_client, self.group, consumer)
        self.membership = Membership(
            projection, engine, redis_client, self.keys, consumer, self.dead_letters.record_from_log
        )
        self.takeover = Takeover(settings, redis_client, self.keys, self.group, consumer, self.heartbeat, stop)
        self.joined = False  # the group joined, and our own pending entries finished, since the last failure
        self.linger_next = False  # the last batch says events arrive faster than one per round

    @property
    def group(self) -> str:
        return self.projection.name

    @property
    def batch_size(self) -> int:
        return self.projection.batch_size(self.settings.consumer_batch_size)

    def run(self) -> None:
        """Until stopped, with a heartbeat: finish our own pending entries, then read new ones, take
        over those of dead consumers and claim stale ones; after a failure, back off and join again."""
        self.heartbeat.start()
        try:
            run_until_stopped(self._round, self.stop, self.consumer, recover=self._recover)
        finally:  # beating until the last batch is acknowledged: nobody takes it over meanwhile
            if self.heartbeat.close():  # (Redis answers: not a stop that waits on an outage)
                self.takeover.leave_group()

    def _round(self) -> None:
        if not self.joined:
            self.heartbeat.beat()  # before any read: a consumer in the group without its key looks dead
            self.ensure_groups()
            self.drain_own_pending()
            self.joined = True
        self.step()
        if time.monotonic() >= self.takeover.next_takeover:
            self.takeover.take_over_dead(self.process)
        if time.monotonic() >= self.takeover.next_claim:
            self.takeover.claim_stale(self.process)
            if self.membership.catch_up_unknown:
                self.ensure_groups()

    def _recover(self, exc: Exception) -> bool:
        """Nothing is lost by a failure (unacknowledged entries stay pending): join again, and after a
        Redis failure, distrust missing heartbeats for a while. A lost group is recreated at once."""
        self.joined = False
        if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
            log.warning("%s: group %s is gone (Redis lost data?); recreating it", self.consumer, self.group)
            self.heartbeat.disturbed()
            return True
        if isinstance(exc, TRANSIENT) and isinstance(exc, redis.RedisError):
            self.heartbeat.disturbed()  # whose keys expired meanwhile is not known: wait and see
        return False

    def ensure_groups(self) -> None:
        """Create the group where it is missing, and fill a new projection from the log (workers/groups.py)."""
        self.membership.ensure()

    def drain_own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart and never acknowledged.
        Stops when a batch acknowledges nothing: what still fails is claimed again later."""
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
        self.linger_next = 1 < handled < self.batch_size
        return handled

    def _read(self, last_id: str, block: int | None = None) -> Any:
        if isinstance(self.redis, redis.RedisCluster):
            return self._read_each(last_id, block)
        return self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.keys, last_id),
            count=self.batch_size,
            block=block,
        )

    def _read_each(self, last_id: str, block: int | None) -> Any:
        """On Redis Cluster the partitions live in different slots, and one XREADGROUP may name keys
        of one slot only: read each partition without blocking, and pause briefly when all are empty."""
        response: list[Any] = []
        for key in self.keys:
            response += self.redis.xreadgroup(
                self.group, self.consumer, {key: last_id}, count=self.batch_size
            ) or []  # fmt: skip
        if block and not any(entries for _key, entries in response):
            self.stop.wait(min(block, 20) / 1000)
        return response

    def process(self, response: Any) -> int:
        """Apply a batch in one transaction and acknowledge it; on failure, entry by entry.
        Returns how many entries it acknowledged."""
        batch = entries(response)
        if not batch:
            return 0
        try:
            self._commit([decode_entry(fields) for _key, _id, fields in batch])
            done = batch
        except TRANSIENT:
            raise
        except Exception:
            log.warning("%s: a batch of %d failed; applying it entry by entry", self.consumer, len(batch))
            done = self._one_by_one(batch)
        self._ack(done)
        return len(done)

    def _one_by_one(self, batch: list[Entry]) -> list[Entry]:
        """The entries applied, or given up on (dead-lettered); a failing one stays pending till then."""
        done = []
        for entry in batch:
            try:
                self._commit([decode_entry(entry[2])])
                done.append(entry)
            except TRANSIENT:
                self._ack(done)
                raise
            except Exception as exc:
                if self.dead_letters.gives_up(entry, exc):
                    done.append(entry)
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

    def _ack(self, done: list[Entry]) -> None:
        ids: dict[str, list[str]] = defaultdict(list)
        for key, entry_id, _fields in done:
            ids[key].append(entry_id)
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            for key, entry_ids in ids.items():
                pipe.xack(key, self.group, *entry_ids)
            pipe.execute()
