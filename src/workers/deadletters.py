"""Dead letters: stream entries a projection gave up on, kept in PostgreSQL (Redis may lose them).

A consumer records one after `max_deliveries` failed attempts, together with a copy on the
dead-letter stream, then acknowledges the original so the other events keep flowing. An operator
lists them (`GET /admin/dead-letters`), redrives one (an rq job re-applies the event, read again from
the event store, the truth), or discards one, which is recorded, not deleted. This module is the
table's one owner: the consumer, the rq job and the admin endpoints all go through it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rq import Queue
from rq.job import Job
from sqlalchemy import Connection, Engine, text

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.platform.logs import event_context
from workers.checkpoints import apply_batch

log = logging.getLogger(__name__)

# What the admin API shows of a dead letter (all but the raw stream entry).
_COLUMNS = (
    "id, projection, stream_key, entry_id, event_id, stream_id, version, event_type, error, consumer, attempts,"
    " failed_at, status, redrive_job_id, resolved_at, resolution"
)


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


def find(engine: Engine, dead_letter_id: int) -> dict[str, Any] | None:
    """One dead letter, or None."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = :id"), {"id": dead_letter_id}).first()
    return dict(row._mapping) if row else None


def page(engine: Engine, status: str | None, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """How many dead letters there are (of one status, if given), and a page of them, newest first."""
    where = "WHERE status = :status" if status else ""
    params = {"status": status, "n": limit, "o": offset}
    with engine.connect() as conn:
        total = conn.execute(text(f"SELECT count(*) FROM dead_letters {where}"), params).scalar_one()
        rows = conn.execute(
            text(f"SELECT {_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT :n OFFSET :o"), params
        )
        return int(total), [dict(r._mapping) for r in rows]


def enqueue_redrive(engine: Engine, queue: Queue, letter: dict[str, Any], meta: dict[str, Any]) -> Job:
    """Queue the rq job that redrives this (open) dead letter, and note the job on the letter."""
    letter_id = letter["id"]
    description = (
        f"redrive dead letter {letter_id}: {letter['event_type']} v{letter['version']} "
        f"of {letter['stream_id']} into {letter['projection']}"
    )
    job = queue.enqueue(
        "workers.jobs.redrive_dead_letter",
        letter_id,
        description=description,
        meta={"dead_letter_id": letter_id, "projection": letter["projection"], **meta},
        result_ttl=7 * 86400,
        failure_ttl=7 * 86400,
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE dead_letters SET redrive_job_id = :j WHERE id = :id"), {"j": job.id, "id": letter_id})
    return job
