"""The relay's view of the outbox table: unpublished rows, where published rows went, retention.

A row is unpublished while entry_ms is NULL. Once XADDed it records its partition and entry id, and
stays until every consumer group has acknowledged that entry (see workers/retention.py). So the
outbox always holds exactly the events that Redis might still have to deliver: if Redis loses a
stream, marking that partition's rows unpublished again republishes everything not yet consumed.

Statements run on the psycopg connection under the SQLAlchemy one, so they also work inside
`app.db.pipelined_transaction` (the relay's publishing loop): writes there are not waited for.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.db import driver
from app.events import RecordedEvent
from app.eventstore import COLUMNS
from app.streams import EntryId

_UNPUBLISHED = (
    f"SELECT {', '.join('e.' + c for c in COLUMNS.split(', '))} FROM outbox o"
    " JOIN events e ON e.position = o.position WHERE o.entry_ms IS NULL ORDER BY o.position LIMIT %(n)s"
)
_LAST_PUBLISHED = "SELECT stream_partition, last_ms, last_seq FROM relay_partitions"
_MARK = """
    UPDATE outbox o SET stream_partition = r.p, entry_ms = r.ms, entry_seq = r.seq
    FROM unnest(%(pos)s::bigint[], %(p)s::smallint[], %(ms)s::bigint[], %(seq)s::bigint[]) AS r(pos, p, ms, seq)
    WHERE o.position = r.pos
"""
_NEWEST = """
    INSERT INTO relay_partitions (stream_partition, last_ms, last_seq)
    SELECT * FROM unnest(%(p)s::smallint[], %(ms)s::bigint[], %(seq)s::bigint[])
    ON CONFLICT (stream_partition) DO UPDATE
        SET last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, published_at = now()
"""


def unpublished(conn: Connection, limit: int) -> list[RecordedEvent]:
    """The oldest events not yet on a stream, in position order."""
    with driver(conn).cursor(row_factory=dict_row) as cur:
        return [RecordedEvent(**row) for row in cur.execute(_UNPUBLISHED, {"n": limit}).fetchall()]


def unpublished_and_newest(conn: Connection, limit: int) -> tuple[list[RecordedEvent], dict[int, EntryId]]:
    """`unpublished` and `last_published` at once (one round trip in a pipelined transaction)."""
    newest = driver(conn).execute(_LAST_PUBLISHED)
    events = unpublished(conn, limit)
    return events, {partition: (ms, seq) for partition, ms, seq in newest.fetchall()}


def mark_published(conn: Connection, rows: Sequence[tuple[int, int, EntryId]]) -> None:
    """Record (position, partition, entry id) for each event just XADDed, and each partition's newest id."""
    pg = driver(conn)
    pg.execute(
        _MARK,
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
    pg.execute(
        _NEWEST,
        {"p": list(newest), "ms": [i[0] for i in newest.values()], "seq": [i[1] for i in newest.values()]},
    )


def last_published(conn: Connection) -> dict[int, EntryId]:
    """The newest entry id the relay wrote to each partition."""
    rows = driver(conn).execute(_LAST_PUBLISHED).fetchall()
    return {partition: (ms, seq) for partition, ms, seq in rows}


def republish(conn: Connection, partition: int) -> int:
    """Redis lost this partition's stream: publish its retained rows again. Returns how many."""
    pg = driver(conn)
    count = pg.execute(
        "UPDATE outbox SET stream_partition = NULL, entry_ms = NULL, entry_seq = NULL"
        " WHERE stream_partition = %(p)s AND entry_ms IS NOT NULL",
        {"p": partition},
    ).rowcount
    pg.execute("DELETE FROM relay_partitions WHERE stream_partition = %(p)s", {"p": partition})
    return count


def forget_acknowledged(conn: Connection, partition: int, below: EntryId) -> int:
    """Drop rows whose entries every group acknowledged (entry id < `below`). Returns how many."""
    return (
        driver(conn)
        .execute(
            "DELETE FROM outbox WHERE stream_partition = %(p)s AND entry_ms IS NOT NULL"
            " AND (entry_ms, entry_seq) < (%(ms)s, %(seq)s)",
            {"p": partition, "ms": below[0], "seq": below[1]},
        )
        .rowcount
    )


def backlog(conn: Connection) -> int:
    """Events committed but not yet on a stream."""
    row = driver(conn).execute("SELECT count(*) FROM outbox WHERE entry_ms IS NULL").fetchone()
    return int(row[0]) if row else 0
