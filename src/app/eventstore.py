"""The append-only event store in PostgreSQL.

Optimistic concurrency is the primary key `(stream_id, version)`: two writers that loaded the same
version both try to insert version n+1, and PostgreSQL lets exactly one of them commit. A trigger in
the schema copies every inserted event's position into `outbox` in the same transaction, so an event
cannot commit without also being queued for the relay (see workers/relay.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from app.events import SCHEMA_VERSIONS, Event, RecordedEvent, to_payload


class ConcurrencyError(Exception):
    """Another writer appended to the stream after we loaded it."""


_INSERT = text(
    """
    INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)
    SELECT * FROM unnest(
        CAST(:event_ids AS uuid[]), CAST(:stream_ids AS text[]), CAST(:versions AS int[]),
        CAST(:types AS text[]), CAST(:schema_versions AS int[]),
        CAST(:payloads AS jsonb[]), CAST(:metadatas AS jsonb[]))
    RETURNING event_id::text, position, recorded_at
    """
)

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
    rows = {
        "event_ids": event_ids,
        "stream_ids": [stream_id] * len(events),
        "versions": versions,
        "types": types,
        "schema_versions": [SCHEMA_VERSIONS[t] for t in types],
    }
    payloads = [to_payload(e) for e in events]
    try:
        result = conn.execute(
            _INSERT,
            {
                **rows,
                "payloads": [json.dumps(p, separators=(",", ":")) for p in payloads],
                "metadatas": [json.dumps(metadata, separators=(",", ":"))] * len(events),
            },
        ).all()
    except IntegrityError as exc:  # the transaction is aborted either way; the caller rolls it back
        if "events_pkey" in str(exc.orig):
            raise ConcurrencyError(f"stream {stream_id} moved past version {expected_version}") from exc
        raise
    by_id = {r.event_id: r for r in result}
    return [
        RecordedEvent(
            event_id=eid,
            stream_id=stream_id,
            version=version,
            position=by_id[eid].position,
            type=etype,
            schema_version=SCHEMA_VERSIONS[etype],
            payload=payload,
            metadata=metadata,
            recorded_at=by_id[eid].recorded_at,
        )
        for eid, version, etype, payload in zip(event_ids, versions, types, payloads, strict=True)
    ]


def load(
    conn: Connection, stream_id: str, after_version: int = 0, up_to_version: int | None = None
) -> list[RecordedEvent]:
    """The stream's events with after_version < version <= up_to_version, in version order."""
    sql = f"SELECT {COLUMNS} FROM events WHERE stream_id = :s AND version > :after"
    params: dict[str, Any] = {"s": stream_id, "after": after_version}
    if up_to_version is not None:
        sql += " AND version <= :upto"
        params["upto"] = up_to_version
    rows = conn.execute(text(sql + " ORDER BY version"), params).mappings()
    return [RecordedEvent(**row) for row in rows]
