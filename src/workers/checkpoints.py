"""Exactly-once effect for a projection fed by an at-least-once, competing-consumer transport.

For each (projection, order) we keep the last applied version in `projection_checkpoints`, locked and
updated in the same transaction as the projection's rows:
- version <= checkpoint: a duplicate, skipped;
- version  > checkpoint + 1: a gap (the earlier event is with another consumer, not yet read, or was
  lost with Redis), so the missing events are read from the event store and applied first.
Checkpoint rows are created, then locked, in stream_id order, so two consumers never wait on each other
in a cycle. A stream met for the first time gets its row at its final version straight away (one
write, not an insert, a lock and an update): a rebuild meets almost every stream that way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.platform.db import driver


def apply_batch(conn: Connection, projection: Projection, events: Sequence[RecordedEvent]) -> int:
    """Apply the events the projection has not seen, in version order, as one batch (whatever its
    size: one event is a batch of one); returns how many were applied."""
    by_stream: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        by_stream[event.stream_id].append(event)
    # Where each stream's checkpoint ends if the batch commits: at its newest event here (older ones
    # are duplicates or applied first; missing ones are read from the event store).
    newest = {stream_id: max(e.version for e in by_stream[stream_id]) for stream_id in sorted(by_stream)}
    # Shared with other batches of this projection; a rebuild's swap takes it exclusively.
    # Statements go to psycopg itself and results are read with its fetch methods only, so that the
    # same code runs in a plain transaction and in a pipelined one (see ConsumerGroupRunner._commit).
    pg = driver(conn)
    pg.execute("SELECT pg_advisory_xact_lock_shared(%s)", (projection.lock_key,))
    new = _create_checkpoints(conn, projection.name, newest)
    checkpoints = _lock_checkpoints(conn, projection.name, [s for s in newest if s not in new])
    todo: list[RecordedEvent] = []
    moved: dict[str, int] = {}
    for stream_id, stream_events in sorted(by_stream.items()):
        start = version = 0 if stream_id in new else checkpoints[stream_id]
        for event in sorted(stream_events, key=lambda e: e.version):
            if event.version <= version:
                continue
            if event.version > version + 1:
                todo += eventstore.load(conn, stream_id, version, event.version - 1)
            todo.append(event)
            version = event.version
        if version != start and stream_id not in new:
            moved[stream_id] = version
    if todo:
        projection.apply(conn, todo, new)
    if moved:
        pg.execute(_MOVE, {"p": projection.name, "moved": json.dumps(moved)})
    return len(todo)


# Stream ids and versions travel as JSON: psycopg adapts a list element by element in Python.
_CREATE = (
    "INSERT INTO projection_checkpoints (projection, stream_id, version)"
    " SELECT %(p)s, key, CAST(value AS int) FROM json_each_text(CAST(%(newest)s AS json)) ORDER BY key"
    " ON CONFLICT DO NOTHING RETURNING stream_id"
)
_LOCK = (
    "SELECT stream_id, version FROM projection_checkpoints WHERE projection = %(p)s AND stream_id ="
    " ANY(ARRAY(SELECT json_array_elements_text(CAST(%(s)s AS json)))) ORDER BY stream_id FOR UPDATE"
)
_MOVE = (
    "UPDATE projection_checkpoints c SET version = CAST(m.value AS int)"
    " FROM json_each_text(CAST(%(moved)s AS json)) AS m WHERE c.projection = %(p)s AND c.stream_id = m.key"
    " AND c.stream_id = ANY(ARRAY(SELECT json_object_keys(CAST(%(moved)s AS json))))"  # via the key, always
)


def _create_checkpoints(conn: Connection, projection: str, newest: dict[str, int]) -> frozenset[str]:
    """Streams this projection meets for the first time: their checkpoint row is inserted at the
    version the batch brings them to (a concurrent batch that meets them too waits on our insert,
    then finds it). They had no checkpoint, so no event of theirs was applied: no rows either."""
    rows = driver(conn).execute(_CREATE, {"p": projection, "newest": json.dumps(newest)}).fetchall()
    return frozenset(stream_id for (stream_id,) in rows)


def _lock_checkpoints(conn: Connection, projection: str, streams: list[str]) -> dict[str, int]:
    if not streams:
        return {}
    rows = driver(conn).execute(_LOCK, {"p": projection, "s": json.dumps(streams)}).fetchall()
    return dict(rows)


_SUMMARY = "SELECT count(*), coalesce(sum(version), 0) FROM projection_checkpoints WHERE projection = %(p)s"


def summary(conn: Connection, projection: str) -> tuple[int, int]:
    """How many orders the projection tracks, and how many of their events it has folded in (or skipped)."""
    row = driver(conn).execute(_SUMMARY, {"p": projection}).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def behind_live(conn: Connection, projection: str, shadow: str) -> list[tuple[str, int, int]]:
    """(stream, shadow version, live version) of every stream the live checkpoints are ahead of the
    rebuild's shadow ones on (a rebuild's swap applies those events to the shadow first)."""
    return [
        (str(stream_id), int(behind), int(live))
        for stream_id, behind, live in driver(conn).execute(
            f"SELECT l.stream_id, coalesce(s.version, 0), l.version FROM public.projection_checkpoints l"
            f" LEFT JOIN {shadow}.projection_checkpoints s ON s.projection = l.projection AND s.stream_id = l.stream_id"
            f" WHERE l.projection = %(p)s AND l.version > coalesce(s.version, 0)",
            {"p": projection},
        )
    ]


def replace_from(conn: Connection, projection: str, shadow: str) -> None:
    """The projection's live checkpoints become those of the rebuild's shadow schema (in the swap's
    transaction, with the swapped tables)."""
    pg = driver(conn)
    pg.execute("DELETE FROM public.projection_checkpoints WHERE projection = %(p)s", {"p": projection})
    pg.execute(
        f"INSERT INTO public.projection_checkpoints SELECT * FROM {shadow}.projection_checkpoints"
        " WHERE projection = %(p)s",
        {"p": projection},
    )
