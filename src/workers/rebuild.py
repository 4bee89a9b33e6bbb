"""Rebuilding a projection beside live traffic: replay into shadow tables, catch up, swap atomically.

1. A shadow schema gets empty copies of the projection's tables and of projection_checkpoints.
2. The whole log is replayed into it (search_path puts the shadow first, so the projector's own SQL
   writes there), batch after batch, then again for what arrived meanwhile.
3. The swap, in one transaction: take the projection's advisory lock exclusively (live batches hold
   it shared, so the swap waits for the running one and holds off the next); apply to the shadow
   whatever the live tables have and it has not (per-order checkpoints say exactly what); move the
   live tables out and the shadow tables in; copy the shadow's checkpoints over the live ones.
Queries read the live tables until the swap commits and the new ones after: never a half-built table.
Events the live projector has not applied yet are still pending in Redis and land in the new tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.eventlog import store as eventstore
from app.eventlog.projection import Projection
from app.platform.metrics import REBUILD_PROGRESS
from workers import checkpoints, rebuild_records
from workers.replay import Progress, replay


def rebuild(
    engine: Engine, projection: Projection, on_progress: Callable[[str, Progress], None] | None = None
) -> Progress:
    """Rebuild the projection's tables from the event store; returns the final progress."""
    shadow, retired = f"rebuild_{projection.name}", f"retired_{projection.name}"
    report = on_progress or (lambda _step, _progress: None)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {shadow} CASCADE; CREATE SCHEMA {shadow}"))
        for table in (*projection.tables, "projection_checkpoints"):
            conn.execute(text(f"CREATE TABLE {shadow}.{table} (LIKE public.{table} INCLUDING ALL)"))
        progress = Progress(total=eventstore.count_events(conn))
    report("replaying", progress)
    replay(engine, projection, progress, schema=shadow, on_batch=lambda p: report("replaying", p))
    with engine.begin() as conn:  # what arrived during the first pass, outside the swap's lock
        progress.total = progress.done + eventstore.count_events(conn, progress.last_position)
    replay(engine, projection, progress, schema=shadow, on_batch=lambda p: report("replaying", p))
    report("swapping", progress)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": projection.lock_key})
        conn.execute(text(f"SET LOCAL search_path TO {shadow}, public"))
        progress.done += _catch_up_with_live(conn, projection, shadow)
        conn.execute(text("SET LOCAL search_path TO public"))
        conn.execute(text(f"DROP SCHEMA IF EXISTS {retired} CASCADE; CREATE SCHEMA {retired}"))
        for table in projection.tables:
            conn.execute(text(f"ALTER TABLE public.{table} SET SCHEMA {retired}"))
            conn.execute(text(f"ALTER TABLE {shadow}.{table} SET SCHEMA public"))
        checkpoints.replace_from(conn, projection.name, shadow)
        conn.execute(text(f"DROP SCHEMA {shadow} CASCADE; DROP SCHEMA {retired} CASCADE"))
    report("done", progress)
    return progress


def _catch_up_with_live(conn: Connection, projection: Projection, shadow: str) -> int:
    """Apply to the shadow every event the live tables reflect and the shadow does not yet."""
    behind = checkpoints.behind_live(conn, projection.name, shadow)
    events = [e for stream_id, since, live in behind for e in eventstore.load(conn, stream_id, since, live)]
    if events:
        checkpoints.apply_batch(conn, projection, events)
    return len(events)


class RebuildTracker:
    """Reports a rebuild's progress to its projection_rebuilds row and its rq job's meta (rq-dashboard)."""

    def __init__(
        self, engine: Engine, projection: str, rebuild_id: int, job: Any = None, every_seconds: float = 1.0
    ) -> None:
        self.engine, self.projection, self.rebuild_id, self.job = engine, projection, rebuild_id, job
        self.every = every_seconds
        self.last = 0.0

    def update(self, step: str, progress: Progress) -> None:
        REBUILD_PROGRESS.labels(self.projection).set(progress.done / progress.total if progress.total else 1.0)
        now = time.monotonic()
        if step == "replaying" and now - self.last < self.every:
            return
        self.last = now
        rebuild_records.report(self.engine, self.rebuild_id, step, progress)
        if self.job is not None:
            eta = progress.eta_seconds
            self.job.meta.update(
                step=step,
                events_done=progress.done,
                events_total=progress.total,
                rate=round(progress.rate, 1),
                eta_seconds=round(eta, 1) if eta is not None else None,
            )
            self.job.save_meta()

    def fail(self, exc: Exception) -> None:
        rebuild_records.fail(self.engine, self.rebuild_id, f"{type(exc).__name__}: {exc}")
