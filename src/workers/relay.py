"""The outbox relay: publishes committed events to Redis Streams, in order, at least once.

Why an outbox and not a cursor over `events.position`: positions come from a sequence, so a
transaction that took position 41 can commit after one that took 42. A reader tailing by position
would pass 41 and never see it (the "gap" problem). The outbox row is inserted in the event's own
transaction and deleted only after XADD succeeded, so a late commit simply shows up later.

Only one relay publishes at a time: it holds a session-level PostgreSQL advisory lock on a dedicated
connection. Standbys try the lock every second; if the leader dies, its connection closes, the lock
is released and a standby takes over. A crash between XADD and the DELETE republishes a batch;
consumers recognise the duplicates by version (see workers/consumer.py).
"""

from __future__ import annotations

import logging
import threading

import psycopg
import redis
import sqlalchemy.exc
from redis import Redis
from sqlalchemy import Engine

from app import eventstore
from app.config import Settings
from app.streams import encode_entry, stream_key_for

log = logging.getLogger(__name__)

LEADER_LOCK = 0x6F7264657273  # "orders": the advisory lock key that makes a relay the leader
CHANNEL = "orderstream_outbox"  # NOTIFYed by a trigger on outbox inserts
TRANSIENT = (psycopg.OperationalError, sqlalchemy.exc.OperationalError, redis.ConnectionError, redis.TimeoutError)


class Relay:
    def __init__(self, settings: Settings, engine: Engine, redis_client: Redis, stop: threading.Event) -> None:
        self.settings, self.engine, self.redis, self.stop = settings, engine, redis_client, stop
        self.poll_seconds = 1.0

    def run(self) -> None:
        """Until stopped: become leader, then publish whatever the outbox holds."""
        while not self.stop.is_set():
            try:
                self._lead_if_possible()
            except TRANSIENT as exc:
                log.warning("relay lost a connection (%s); retrying in 1s", exc)
                self.stop.wait(1.0)

    def _lead_if_possible(self) -> None:
        with psycopg.connect(self.settings.database_url, autocommit=True) as lock_conn:
            while not self.stop.is_set():
                acquired = lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
                if acquired and acquired[0]:
                    break
                self.stop.wait(self.poll_seconds)
            else:
                return
            log.info("relay is the leader")
            lock_conn.execute(f"LISTEN {CHANNEL}")
            while not self.stop.is_set():
                if self.publish_batch() < self.settings.relay_batch_size:
                    for _ in lock_conn.notifies(timeout=self.poll_seconds, stop_after=1):
                        pass
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
            log.info("relay released leadership")

    def publish_batch(self) -> int:
        """XADD the oldest outbox events (pipelined), then delete their outbox rows. Returns how many."""
        with self.engine.begin() as conn:
            events = eventstore.read_outbox(conn, self.settings.relay_batch_size)
            if not events:
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for event in events:
                key = stream_key_for(self.settings.key_prefix, self.settings.stream_partitions, event.stream_id)
                pipe.xadd(key, encode_entry(event))  # type: ignore[arg-type]
            pipe.execute()
            eventstore.remove_from_outbox(conn, [e.position for e in events])
        return len(events)
