"""Replaying the event store into a projection, in batches by position.

Used to fill a brand-new read model from history, and by rebuilds (into shadow tables). Each batch
is one transaction through the same apply_batch as live consumption, so a replay and live workers can
overlap: whatever both see is applied once (checkpoints), whatever one misses the other applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.platform.db import TRANSIENT_DB_ERRORS, autocommit
from workers.checkpoints import apply_batch

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a replay got: events done of total, rate and estimated time left."""

    total: int
    done: int = 0
    started: float = 0.0
    last_position: int = 0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return max(self.total - self.done, 0) / self.rate if self.rate else None


def replay(
    engine: Engine,
    projection: Projection,
    progress: Progress,
    batch_size: int = 5000,
    schema: str | None = None,
    on_batch: Callable[[Progress], None] | None = None,
    on_poison: Callable[[RecordedEvent, Exception], None] | None = None,
) -> Progress:
    """Replay every event after progress.last_position, until the log has no more (for now).

    Batches are applied one transaction each. While one is applied, the next is read on another
    connection (the log is append-only: reading ahead changes nothing it would see). A batch that
    fails is retried event by event, each as a batch of one, when `on_poison` is given,
    which receives each event that still fails (the others are applied); without it the failure is
    raised.
    """
    progress.started = progress.started or time.monotonic()
    batch_size = projection.batch_size(batch_size)
    with ThreadPoolExecutor(1, thread_name_prefix="replay-read") as reader:
        reading = reader.submit(_read, engine, progress.last_position, batch_size)
        while True:
            events = reading.result()
            if len(events) == batch_size:
                reading = reader.submit(_read, engine, events[-1].position, batch_size)
            if events:
                _apply(engine, projection, events, schema, on_poison)
            progress.done += len(events)
            progress.last_position = events[-1].position if events else progress.last_position
            if on_batch:
                on_batch(progress)
            if len(events) < batch_size:
                return progress


def _read(engine: Engine, after: int, size: int) -> list[RecordedEvent]:
    with autocommit(engine) as conn:
        return eventstore.read_events(conn, after, size)


def _apply(
    engine: Engine,
    projection: Projection,
    events: list[RecordedEvent],
    schema: str | None,
    on_poison: Callable[[RecordedEvent, Exception], None] | None,
) -> None:
    try:
        with _transaction(engine, schema) as conn:
            apply_batch(conn, projection, events)
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception:
        if on_poison is None:
            raise
        log.warning("%s: a replay batch failed; applying it event by event", projection.name, exc_info=True)
        for event in events:
            try:
                with _transaction(engine, schema) as conn:
                    apply_batch(conn, projection, [event])
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:
                on_poison(event, exc)


@contextmanager
def _transaction(engine: Engine, schema: str | None) -> Iterator[Connection]:
    """A transaction writing to `schema` first (a rebuild's shadow tables), else to the live tables."""
    with engine.begin() as conn:
        if schema:
            conn.execute(text(f"SET LOCAL search_path TO {schema}, public"))
        yield conn
