"""The relay's view of the outbox table: unpublished rows, where published rows went, retention.

A row is unpublished while entry_ms is NULL. Once XADDed it records its partition and entry id, and
stays until every consumer group has acknowledged that entry (see workers/retention.py). So the
outbox always holds exactly the events that Redis might still have to deliver: if Redis loses a
stream, marking that partition's rows unpublished again republishes everything not yet consumed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from app.events import RecordedEvent
from app.eventstore import COLUMNS
from app.streams import EntryId

_UNPUBLISHED = text(
    f"SELECT {', '.join('e.' + c for c in COLUMNS.split(', '))} FROM outbox o"
    " JOIN events e ON e.position = o.position WHERE o.entry_ms IS NULL ORDER BY o.position LIMIT :n"
)


def unpublished(conn: Connection, limit: int) -> list[RecordedEvent]:
    """The oldest events not yet on a stream, in position order."""
    return [RecordedEvent(**row) for row in conn.execute(_UNPUBLISHED, {"n": limit}).mappings()]


def mark_published(conn: Connection, rows: Sequence[tuple[int, int, EntryId]]) -> None:
    """Record (position, partition, entry id) for each event just XADDed, and each partition's newest id."""
    conn.execute(
        text(
            "UPDATE outbox o SET stream_partition = r.p, entry_ms = r.ms, entry_seq = r.seq"
            " FROM unnest(CAST(:pos AS bigint[]), CAST(:p AS smallint[]), CAST(:ms AS bigint[]),"
            " CAST(:seq AS bigint[])) AS r(pos, p, ms, seq) WHERE o.position = r.pos"
        ),
        {
            "pos": [r[0] for r in rows],
            "p": [r[1] for r in rows],
            "ms": [r[2][0] for r in rows],
            "seq": [r[2][1] for r in rows],
        },
    )
    newest: dict[int, EntryId] = {}
    for _position, partition, entry_id in rows:
        newest[partition] = max(newest.get(partition, entry_id), entry_id)
    conn.execute(
        text(
            "INSERT INTO relay_partitions (stream_partition, last_ms, last_seq) VALUES (:p, :ms, :seq)"
            " ON CONFLICT (stream_partition) DO UPDATE SET last_ms = :ms, last_seq = :seq, published_at = now()"
        ),
        [{"p": p, "ms": i[0], "seq": i[1]} for p, i in newest.items()],
    )


def last_published(conn: Connection) -> dict[int, EntryId]:
    """The newest entry id the relay wrote to each partition."""
    rows = conn.execute(text("SELECT stream_partition, last_ms, last_seq FROM relay_partitions"))
    return {row.stream_partition: (row.last_ms, row.last_seq) for row in rows}


def republish(conn: Connection, partition: int) -> int:
    """Redis lost this partition's stream: publish its retained rows again. Returns how many."""
    count = conn.execute(
        text(
            "UPDATE outbox SET stream_partition = NULL, entry_ms = NULL, entry_seq = NULL"
            " WHERE stream_partition = :p AND entry_ms IS NOT NULL"
        ),
        {"p": partition},
    ).rowcount
    conn.execute(text("DELETE FROM relay_partitions WHERE stream_partition = :p"), {"p": partition})
    return count


def forget_acknowledged(conn: Connection, partition: int, below: EntryId) -> int:
    """Drop rows whose entries every group acknowledged (entry id < `below`). Returns how many."""
    return conn.execute(
        text(
            "DELETE FROM outbox WHERE stream_partition = :p AND entry_ms IS NOT NULL"
            " AND (entry_ms, entry_seq) < (:ms, :seq)"
        ),
        {"p": partition, "ms": below[0], "seq": below[1]},
    ).rowcount


def backlog(conn: Connection) -> int:
    """Events committed but not yet on a stream."""
    return int(conn.execute(text("SELECT count(*) FROM outbox WHERE entry_ms IS NULL")).scalar_one())
