"""The append-only event store in PostgreSQL.

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
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.eventlog.codec import to_payload
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import SCHEMA_VERSIONS, Event
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

COLUMNS = "event_id::text, stream_id, version, position, type, schema_version, payload, metadata, recorded_at"


def append(
    conn: Connection,
    stream_id: str,
    expected_version: int,
    events: Sequence[Event],
    metadata: dict[str, Any],
) -> list[RecordedEvent]:
    """Append events after `expected_version`; raise ConcurrencyError if someone got there first."""
    if not events:
        return []
    types = [type(e).__name__ for e in events]
    event_ids = [str(uuid.uuid4()) for _ in events]
    versions = [expected_version + i for i in range(1, len(events) + 1)]
    payloads = [to_payload(e) for e in events]
    rows = [
        {"event_id": eid, "stream_id": stream_id, "version": version, "type": etype,
         "schema_version": SCHEMA_VERSIONS[etype], "payload": payload}
        for eid, version, etype, payload in zip(event_ids, versions, types, payloads, strict=True)
    ]  # fmt: skip
    # The events travel as one JSON parameter: cheaper to send than an array per column.
    params = {
        "events": json.dumps(rows, separators=(",", ":")),
        "metadata": json.dumps(metadata, separators=(",", ":")),
    }
    try:
        result = driver(conn).execute(_INSERT, params).fetchall()
    except psycopg.errors.UniqueViolation as exc:  # the transaction is aborted; the caller rolls it back
        if exc.diag.constraint_name == "events_pkey":
            raise ConcurrencyError(f"stream {stream_id} moved past version {expected_version}") from exc
        raise
    by_id = {event_id: (position, recorded_at) for event_id, position, recorded_at in result}
    return [
        RecordedEvent(
            event_id=eid,
            stream_id=stream_id,
            version=version,
            position=by_id[eid][0],
            type=etype,
            schema_version=SCHEMA_VERSIONS[etype],
            payload=payload,
            metadata=metadata,
            recorded_at=by_id[eid][1],
        )
        for eid, version, etype, payload in zip(event_ids, versions, types, payloads, strict=True)
    ]


def load(
    conn: Connection, stream_id: str, after_version: int = 0, up_to_version: int | None = None
) -> list[RecordedEvent]:
    """The stream's events with after_version < version <= up_to_version, in version order."""
    sql = f"SELECT {COLUMNS} FROM events WHERE stream_id = %(s)s AND version > %(after)s"
    params: dict[str, Any] = {"s": stream_id, "after": after_version}
    if up_to_version is not None:
        sql += " AND version <= %(upto)s"
        params["upto"] = up_to_version
    with driver(conn).cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql + " ORDER BY version", params).fetchall()
    return [RecordedEvent(**row) for row in rows]
