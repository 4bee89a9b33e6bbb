"""A projection's consumer group on every partition stream, and where a new one starts.

A projection that has never completed a catch-up (projection_catchups) is new: its group starts at
the streams' end and its history comes from the event store (streams are trimmed; the log is whole).
An interrupted catch-up runs again (checkpoints make it idempotent). Otherwise a missing group was
lost with Redis's data and starts from the beginning; the relay republishes whatever Redis lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from sqlalchemy import Engine, text

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.eventlog.store import count_events
from app.eventlog.streams import StreamsClient, as_str
from app.platform.metrics import EVENTS_APPLIED
from workers.loop import TRANSIENT
from workers.replay import Progress, replay

log = logging.getLogger(__name__)


class Membership:
    """One consumer's part in keeping its projection's group on every stream."""

    def __init__(
        self,
        projection: Projection,
        engine: Engine,
        client: StreamsClient,
        keys: list[str],
        consumer: str,
        on_poison: Callable[[RecordedEvent, Exception], None],
    ) -> None:
        self.projection, self.engine, self.redis, self.keys = projection, engine, client, keys
        self.consumer, self.on_poison = consumer, on_poison
        self.catch_up_unknown = False  # PostgreSQL did not say: ask again later

    @property
    def group(self) -> str:
        return self.projection.name

    def ensure(self) -> None:
        """Create the group on every partition stream where it is missing, and fill a new projection."""
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
            return any(as_str(group["name"]) == self.group for group in self.redis.xinfo_groups(key))
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
                replay(self.engine, self.projection, progress, on_poison=self.on_poison)
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
