"""The event store in PostgreSQL: the one module that issues SQL on `events`.

Every statement that reads or writes the log is here (append, load a stream, read after a position,
the feed, counts, the relay's drain), so its indexes, its locking and its snapshot rules are read in
one place, as eventsourcing's recorder keeps them. Everything else calls these functions.

Optimistic concurrency is the primary key `(stream_id, version)`: two writers that loaded the same
version both try to insert version n+1, and PostgreSQL lets exactly one of them commit. A trigger in
the schema copies every inserted event's position into `outbox` in the same transaction, so an event
cannot commit without also being queued for the relay (see workers/relay.py).

The statements run on the psycopg connection under the SQLAlchemy one (prepared after a few uses,
no SQL compilation per call), so they work both in an ordinary SQLAlchemy transaction and in
`app.platform.db.pipelined_transaction`, which the command path uses to spare round trips.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection

from app.eventlog.codec import Sealer, frozen, to_payload
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import SCHEMA_VERSIONS, DomainEvent
from app.platform.db import driver


class ConcurrencyError(Exception):
    """Another writer appended to the stream after we loaded it."""


_INSERT = """
    INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)
    SELECT event_id, stream_id, version, type, schema_version, payload, %(metadata)s::jsonb
    FROM jsonb_to_recordset(%(events)s::jsonb)
        AS e(event_id uuid, stream_id text, version int, type text, schema_version int, payload jsonb)
    RETURNING event_id::text, position, recorded_at
"""


def _envelope(e: str = "") -> str:
    """The columns every read selects (of table alias `e`): payload and metadata come as one JSON
    array text, one parse per event instead of two, and rows as plain tuples (psycopg's per-row
    dicts, and SQLAlchemy's row mappings, cost more than the SQL)."""
    return (
        f"{e}event_id::text, {e}stream_id, {e}version, {e}position, {e}type, {e}schema_version,"
        f" '[' || {e}payload::text || ',' || {e}metadata::text || ']', {e}recorded_at"
    )


_SELECT = f"SELECT {_envelope()} FROM events"
_BATCH = f"{_SELECT} WHERE position > %(after)s ORDER BY position LIMIT %(n)s"
# Only events of transactions older than every running one: a position whose transaction has not
# committed yet may be lower than those served, and a reader's cursor would pass it for good.
_FEED = f"{_SELECT} WHERE position > %(after)s AND tx < pg_snapshot_xmin(pg_current_snapshot())"
_UNPUBLISHED = (
    f"SELECT {_envelope('e.')} FROM outbox o JOIN events e ON e.position = o.position"
    " WHERE o.entry_ms IS NULL ORDER BY o.position LIMIT %(n)s"
)
_UNPUBLISHED_AGE = (
    "SELECT extract(epoch FROM now() - min(e.recorded_at)) FROM outbox o"
    " JOIN events e ON e.position = o.position WHERE o.entry_ms IS NULL"
)


def append(
    conn: Connection,
    stream_id: str,
    expected_version: int,
    events: Sequence[DomainEvent],
    metadata: dict[str, Any],
    seal: Sealer | None = None,
) -> list[RecordedEvent]:
    """Append events after `expected_version`; raise ConcurrencyError if someone got there first.
    Personal data in them is sealed with `seal` (without one, an event holding any is refused)."""
    return append_streams(conn, [(stream_id, expected_version, events)], metadata, seal)


Appending = tuple[str, int, Sequence[DomainEvent]]  # (stream id, its expected version, its new events)


def append_streams(
    conn: Connection, appends: Sequence[Appending], metadata: dict[str, Any], seal: Sealer | None = None
) -> list[RecordedEvent]:
    """Append to several streams in one statement (so in the caller's one transaction), each after its
    expected version: all of them are written or, if any stream moved (ConcurrencyError), none.

    Streams are written in stream id order, so two writers appending to overlapping sets of streams
    wait on each other's key locks in one order and never deadlock."""
    rows: list[dict[str, Any]] = []
    for stream_id, expected_version, events in sorted(appends, key=lambda a: a[0]):
        for version, event in enumerate(events, start=expected_version + 1):
            etype = type(event).__name__
            rows.append({"event_id": str(uuid.uuid4()), "stream_id": stream_id, "version": version, "type": etype,
                         "schema_version": SCHEMA_VERSIONS[etype], "payload": to_payload(event, seal)})  # fmt: skip
    if not rows:
        return []
    # The events travel as one JSON parameter: cheaper to send than an array per column.
    params = {
        "events": json.dumps(rows, separators=(",", ":")),
        "metadata": json.dumps(metadata, separators=(",", ":")),
    }
    try:
        result = driver(conn).execute(_INSERT, params).fetchall()
    except psycopg.errors.UniqueViolation as exc:  # the transaction is aborted; the caller rolls it back
        if exc.diag.constraint_name == "events_pkey":
            moved = " or ".join(f"stream {stream_id} moved past version {version}" for stream_id, version, _ in appends)
            raise ConcurrencyError(moved) from exc
        raise
    by_id = {event_id: (position, recorded_at) for event_id, position, recorded_at in result}
    return [
        RecordedEvent(
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            version=row["version"],
            position=by_id[row["event_id"]][0],
            type=row["type"],
            schema_version=row["schema_version"],
            payload=row["payload"],
            metadata=metadata,
            recorded_at=by_id[row["event_id"]][1],
        )
        for row in rows
    ]


def load(
    conn: Connection,
    stream_id: str,
    after_version: int = 0,
    up_to_version: int | None = None,
    recorded_by: datetime | None = None,
) -> list[RecordedEvent]:
    """The stream's events with after_version < version <= up_to_version (and, for time travel,
    recorded no later than `recorded_by`), in version order."""
    sql = f"{_SELECT} WHERE stream_id = %(s)s AND version > %(after)s"
    params: dict[str, Any] = {"s": stream_id, "after": after_version}
    if up_to_version is not None:
        sql += " AND version <= %(upto)s"
        params["upto"] = up_to_version
    if recorded_by is not None:
        sql += " AND recorded_at <= %(at)s"
        params["at"] = recorded_by
    return _read(conn, sql + " ORDER BY version", params)


def read_events(conn: Connection, after: int, limit: int) -> list[RecordedEvent]:
    """The next `limit` events after position `after`, in position order (replays and rebuilds)."""
    return _read(conn, _BATCH, {"after": after, "n": limit})


def of_type(conn: Connection, event_type: str) -> list[RecordedEvent]:
    """Every event of one type, in position order (rare types only: it reads them all)."""
    return _read(conn, f"{_SELECT} WHERE type = %(type)s ORDER BY position", {"type": event_type})


def feed(conn: Connection, after: int, limit: int, event_type: str | None = None) -> list[RecordedEvent]:
    """The public feed: up to `limit` events after position `after` that no reader can see appear
    before them later (see _FEED), optionally of one type only."""
    sql = _FEED + (" AND type = %(type)s" if event_type else "")
    return _read(conn, sql + " ORDER BY position LIMIT %(limit)s", {"after": after, "limit": limit, "type": event_type})


def unpublished(conn: Connection, limit: int) -> list[RecordedEvent]:
    """The oldest events the relay has not put on a stream yet (their outbox rows), in position order."""
    return _read(conn, _UNPUBLISHED, {"n": limit})


def oldest_unpublished_age(conn: Connection) -> float | None:
    """Seconds since the oldest event not yet on a stream was recorded (None when there is none)."""
    row = driver(conn).execute(_UNPUBLISHED_AGE).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def count_events(conn: Connection, after: int = 0) -> int:
    """How many events the log holds after position `after`."""
    row = driver(conn).execute("SELECT count(*) FROM events WHERE position > %(p)s", {"p": after}).fetchone()
    return int(row[0]) if row else 0


def _read(conn: Connection, sql: str, params: dict[str, Any]) -> list[RecordedEvent]:
    """Run a select of `_envelope()` and build each row into a RecordedEvent (the only place that does)."""
    events = []
    for event_id, stream_id, version, position, event_type, schema_version, json_text, recorded_at in (
        driver(conn).execute(sql, params).fetchall()
    ):
        payload, metadata = orjson.loads(json_text)
        events.append(frozen(RecordedEvent, {
            "event_id": event_id, "stream_id": stream_id, "version": version, "position": position,
            "type": event_type, "schema_version": schema_version, "payload": payload, "metadata": metadata,
            "recorded_at": recorded_at,
        }))  # fmt: skip
    return events
