"""Dead letters: stream entries a projection gave up on, kept in PostgreSQL (Redis may lose them).

A consumer records one after `max_deliveries` failed attempts, together with a copy on the
dead-letter stream, then acknowledges the original so the other events keep flowing. An operator
lists them (`GET /admin/dead-letters`), redrives one (an rq job re-applies the event, read again from
the event store, the truth), or discards one, which is recorded, not deleted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.platform.logs import event_context
from workers.checkpoints import apply_batch

log = logging.getLogger(__name__)


def record(
    conn: Connection,
    projection: str,
    key: str,
    entry_id: str,
    fields: dict[str, str],
    event: RecordedEvent | None,
    error: str,
    consumer: str,
    attempts: int,
) -> int:
    """Store a dead letter (once per open entry) and return its id."""
    row = conn.execute(
        text(
            "INSERT INTO dead_letters (projection, stream_key, entry_id, event_id, stream_id, version, event_type,"
            " entry, error, consumer, attempts) VALUES (:projection, :key, :entry_id, CAST(:event_id AS uuid),"
            " :stream_id, :version, :type, CAST(:entry AS jsonb), :error, :consumer, :attempts)"
            " ON CONFLICT (projection, stream_key, entry_id) WHERE status = 'open'"
            " DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()"
            " RETURNING id"
        ),
        {
            "projection": projection,
            "key": key,
            "entry_id": entry_id,
            "event_id": event.event_id if event else None,
            "stream_id": event.stream_id if event else None,
            "version": event.version if event else None,
            "type": event.type if event else None,
            "entry": json.dumps(fields),
            "error": error[:4000],
            "consumer": consumer,
            "attempts": attempts,
        },
    ).scalar_one()
    return int(row)


class NotRedrivable(Exception):
    """The dead letter is not open, or its event is not in the event store."""


def redrive(engine: Engine, projections: dict[str, Projection], dead_letter_id: int) -> dict[str, Any]:
    """Apply a dead letter's event again, read from the event store; mark it redriven on success."""
    with engine.begin() as conn:
        letter = (
            conn.execute(text("SELECT * FROM dead_letters WHERE id = :id FOR UPDATE"), {"id": dead_letter_id})
            .mappings()
            .first()
        )
        if letter is None or letter["status"] != "open":
            raise NotRedrivable(f"dead letter {dead_letter_id} is not open")
        if letter["stream_id"] is None:
            raise NotRedrivable(f"dead letter {dead_letter_id} names no event: it can only be discarded")
        events = eventstore.load(conn, letter["stream_id"], letter["version"] - 1, letter["version"])
        if not events:
            raise NotRedrivable(f"event {letter['stream_id']} v{letter['version']} is not in the event store")
        log.info("redriving dead letter", extra={"dead_letter_id": dead_letter_id, **event_context(events[0].metadata)})
        applied = apply_batch(conn, projections[letter["projection"]], events)
        conn.execute(
            text(
                "UPDATE dead_letters SET status = 'redriven', resolved_at = now(),"
                " resolution = :resolution WHERE id = :id"
            ),
            {"id": dead_letter_id, "resolution": f"redriven: {applied} event(s) applied"},
        )
    return {"dead_letter_id": dead_letter_id, "applied": applied}


def discard(engine: Engine, dead_letter_id: int, reason: str) -> bool:
    """Close an open dead letter without applying it; the row and the reason stay. False if not open."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                text(
                    "UPDATE dead_letters SET status = 'discarded', resolved_at = now(), resolution = :reason"
                    " WHERE id = :id AND status = 'open'"
                ),
                {"id": dead_letter_id, "reason": f"discarded: {reason}"},
            ).rowcount
        )
