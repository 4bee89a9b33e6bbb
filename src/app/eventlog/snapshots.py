"""Snapshots: an aggregate's folded state at a version, stored beside the log (table `snapshots`).

A stream that grows without end (a SKU's: every reservation is an event) is loaded from its newest
snapshot and the events after it, so the cost of a load does not grow with the stream. Snapshots
are a cache, never the source of truth: only one of the reader's schema version counts (a state
written by older rules is ignored), and deleting every snapshot changes no answer, only its cost.
A snapshot is written in the transaction of the append that crossed the multiple, so it never
describes events that did not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from app.platform.db import driver


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    version: int
    state: dict[str, Any]


_LATEST = (
    "SELECT version, state FROM snapshots WHERE stream_id = %(s)s AND schema_version = %(v)s"
    " ORDER BY version DESC LIMIT 1"
)
_SAVE = (
    "INSERT INTO snapshots (stream_id, version, schema_version, state) VALUES (%(s)s, %(n)s, %(v)s, %(state)s)"
    " ON CONFLICT (stream_id, version) DO UPDATE SET schema_version = EXCLUDED.schema_version,"
    " state = EXCLUDED.state, taken_at = now()"
)


def latest(conn: Connection, stream_id: str, schema_version: int) -> Snapshot | None:
    """The stream's newest snapshot written with `schema_version` (None: fold from the start)."""
    row = driver(conn).execute(_LATEST, {"s": stream_id, "v": schema_version}).fetchone()
    return None if row is None else Snapshot(stream_id, int(row[0]), row[1])


def save(conn: Connection, stream_id: str, version: int, schema_version: int, state: dict[str, Any]) -> None:
    """Store the state at `version` (in the caller's transaction: with the events it folds)."""
    driver(conn).execute(_SAVE, {"s": stream_id, "n": version, "v": schema_version, "state": Jsonb(state)})


def crossed(before: int, after: int, every: int) -> bool:
    """Whether an append from version `before` to `after` passed a multiple of `every`."""
    return every > 0 and after // every > before // every


def delete_all(conn: Connection) -> int:
    """Drop every snapshot (they are rebuilt by the next appends); returns how many there were."""
    return driver(conn).execute("DELETE FROM snapshots").rowcount
