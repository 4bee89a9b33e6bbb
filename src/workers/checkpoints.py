"""Exactly-once effect for a projection fed by an at-least-once, competing-consumer transport.

For each (projection, order) we keep the last applied version in `projection_checkpoints`, locked and
updated in the same transaction as the projection's rows:
- version <= checkpoint: a duplicate, skipped;
- version  > checkpoint + 1: a gap (the earlier event is with another consumer, not yet read, or was
  lost with Redis), so the missing events are read from the event store and applied first.
Checkpoint rows are locked in stream_id order, so two consumers never wait on each other in a cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Connection, text

from app import eventstore
from app.events import RecordedEvent
from app.projection import Projection


def apply_batch(conn: Connection, projection: Projection, events: Sequence[RecordedEvent]) -> int:
    """Apply the events each projection has not seen, in version order; returns how many were applied."""
    by_stream: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        by_stream[event.stream_id].append(event)
    streams = sorted(by_stream)
    # Shared with other batches of this projection; a rebuild's swap takes it exclusively.
    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": projection.lock_key})
    checkpoints = _lock_checkpoints(conn, projection.name, streams)
    applied, moved = 0, []
    for stream_id in streams:
        start = version = checkpoints[stream_id]
        for event in sorted(by_stream[stream_id], key=lambda e: e.version):
            if event.version <= version:
                continue
            gap = eventstore.load(conn, stream_id, version, event.version - 1) if event.version > version + 1 else []
            for e in [*gap, event]:
                projection.apply(conn, e)
                applied += 1
            version = event.version
        if version != start:
            moved.append({"p": projection.name, "s": stream_id, "v": version})
    if moved:
        conn.execute(
            text("UPDATE projection_checkpoints SET version = :v WHERE projection = :p AND stream_id = :s"), moved
        )
    return applied


def _lock_checkpoints(conn: Connection, projection: str, streams: list[str]) -> dict[str, int]:
    conn.execute(
        text(
            "INSERT INTO projection_checkpoints (projection, stream_id, version)"
            " SELECT :p, s, 0 FROM unnest(CAST(:s AS text[])) AS s ORDER BY s ON CONFLICT DO NOTHING"
        ),
        {"p": projection, "s": streams},
    )
    rows = conn.execute(
        text(
            "SELECT stream_id, version FROM projection_checkpoints WHERE projection = :p AND stream_id = ANY(:s)"
            " ORDER BY stream_id FOR UPDATE"
        ),
        {"p": projection, "s": streams},
    )
    return {row.stream_id: row.version for row in rows}
