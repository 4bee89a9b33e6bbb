"""The outbox table's one owner: where published rows went, retention, the backlog.

A row is unpublished while entry_ms is NULL. Once XADDed it records its partition and entry id, and
stays until every consumer group has acknowledged that entry (see workers/retention.py). So the
outbox always holds exactly the events that Redis might still have to deliver: if Redis loses a
stream, marking that partition's rows unpublished again republishes everything not yet consumed.

Reading the unpublished events joins `events`, so that read is the event store's
(app.eventlog.store.unpublished); the relay calls it there.

Statements run on the psycopg connection under the SQLAlchemy one (prepared after a few uses); each
write is one statement, so it is atomic on its own when the relay runs it in autocommit mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from app.eventlog import store as eventstore
from app.eventlog.streams import EntryId
from app.platform.db import driver

_LAST_PUBLISHED = "SELECT stream_partition, last_ms, last_seq FROM relay_partitions"
_MARK = """
    WITH marked AS (
        UPDATE outbox o SET stream_partition = r.p, entry_ms = r.ms, entry_seq = r.seq
        FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(pos bigint, p smallint, ms bigint, seq bigint)
        WHERE o.position = r.pos
    )
    INSERT INTO relay_partitions (stream_partition, last_ms, last_seq)
    SELECT * FROM jsonb_to_recordset(%(newest)s::jsonb) AS n(p smallint, ms bigint, seq bigint)
    ON CONFLICT (stream_partition) DO UPDATE
        SET last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, published_at = now()
"""
_REPUBLISH = """
    WITH again AS (
        UPDATE outbox SET stream_partition = NULL, entry_ms = NULL, entry_seq = NULL
        WHERE stream_partition = %(p)s AND entry_ms IS NOT NULL
        RETURNING 1
    ), forgotten AS (
        DELETE FROM relay_partitions WHERE stream_partition = %(p)s
    )
    SELECT count(*) FROM again
"""


def mark_published(conn: Connection, rows: Sequence[tuple[int, int, EntryId]]) -> None:
    """Record (position, partition, entry id) for each event just XADDed, and each partition's newest id.

    One statement, so it is atomic even on a connection in autocommit mode.
    """
    newest: dict[int, EntryId] = {}
    for _position, partition, entry_id in rows:
        newest[partition] = max(newest.get(partition, entry_id), entry_id)
    marked = [{"pos": pos, "p": p, "ms": ms, "seq": seq} for pos, p, (ms, seq) in rows]
    newest_rows = [{"p": p, "ms": ms, "seq": seq} for p, (ms, seq) in newest.items()]
    # Rows travel as one JSON parameter: for the relay's small batches, far cheaper to send than arrays.
    driver(conn).execute(_MARK, {"rows": json.dumps(marked), "newest": json.dumps(newest_rows)})


def last_published(conn: Connection) -> dict[int, EntryId]:
    """The newest entry id the relay wrote to each partition."""
    rows = driver(conn).execute(_LAST_PUBLISHED).fetchall()
    return {partition: (ms, seq) for partition, ms, seq in rows}


def republish(conn: Connection, partition: int) -> int:
    """Redis lost this partition's stream: publish its retained rows again. Returns how many (one statement)."""
    row = driver(conn).execute(_REPUBLISH, {"p": partition}).fetchone()
    return int(row[0]) if row else 0


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
    """Events committed but not yet on a stream (the relay's metric and GET /admin/relay)."""
    row = driver(conn).execute("SELECT count(*) FROM outbox WHERE entry_ms IS NULL").fetchone()
    return int(row[0]) if row else 0


def retained(conn: Connection) -> int:
    """Events published but not yet acknowledged by every consumer group (kept for republishing)."""
    row = driver(conn).execute("SELECT count(*) FROM outbox WHERE entry_ms IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


def status(conn: Connection) -> dict[str, Any]:
    """What GET /admin/relay shows of the outbox: backlog, retained rows, the oldest unpublished event's age."""
    return {
        "backlog": backlog(conn),
        "retained": retained(conn),
        "oldest_unpublished_age_s": eventstore.oldest_unpublished_age(conn),
    }
