"""Entries that keep failing: counted by their deliveries, and dead-lettered after max_deliveries.

A poison entry stays pending until then (it is claimed again after claim_idle_ms, the backoff), so one
bad event never blocks the others. Its dead letter is recorded in PostgreSQL (workers/deadletters.py:
visible in the admin API, redrivable) and copied to the dead-letter stream, with its error.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Engine

from app.eventlog.envelope import RecordedEvent
from app.eventlog.streams import StreamsClient, as_str, dead_letter_key, decode_entry
from app.platform.config import Settings
from app.platform.logs import event_context
from app.platform.metrics import DEAD_LETTERS
from workers import deadletters
from workers.replies import Entry

log = logging.getLogger(__name__)


class DeadLettering:
    """One consumer's view of its group's failing entries."""

    def __init__(self, settings: Settings, engine: Engine, client: StreamsClient, group: str, consumer: str) -> None:
        self.settings, self.engine, self.redis = settings, engine, client
        self.group, self.consumer = group, consumer

    def gives_up(self, entry: Entry, exc: Exception) -> bool:
        """After a failure of `entry`: dead-letter it if it had its last delivery (True: acknowledge it),
        else log it and leave it pending for a later delivery (False)."""
        key, entry_id, _fields = entry
        attempts = self._deliveries(key, entry_id)
        if attempts >= self.settings.max_deliveries:
            self.record(entry, exc, attempts)
            return True
        log.warning(
            "%s: entry %s of %s failed (delivery %d of %d; retried after %d ms): %r",
            self.consumer, entry_id, key, attempts, self.settings.max_deliveries, self.settings.claim_idle_ms, exc,
        )  # fmt: skip
        return False

    def _deliveries(self, key: str, entry_id: str) -> int:
        pending = self.redis.xpending_range(key, self.group, min=entry_id, max=entry_id, count=1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def record(self, entry: Entry, exc: Exception, attempts: int) -> None:
        """Record the dead letter in PostgreSQL, then copy it to the dead-letter stream."""
        key, entry_id, raw = entry
        fields = {as_str(k): as_str(v) for k, v in raw.items()}
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

    def record_from_log(self, event: RecordedEvent, exc: Exception) -> None:
        """An event that fails while a new projection replays the log: recorded like a stream entry's."""
        entry = ("event-store", f"position-{event.position}", {"envelope": json.dumps(event.to_json())})
        self.record(entry, exc, attempts=1)
