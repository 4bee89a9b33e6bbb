"""What a projection is, as the consumer-group runner sees it: a name and a routing table."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent

Handler = Callable[[Connection, RecordedEvent, Any], None]
BatchHandler = Callable[[Connection, Sequence[RecordedEvent], Collection[str]], None]


@dataclass(frozen=True)
class Projection:
    """A read model: its consumer-group name, which handler applies which event type, and the tables
    it owns (a rebuild replaces exactly these, plus the projection's checkpoints).

    `batch_handler`, when given, applies a whole batch set-based (a few statements per table for the
    batch instead of a few per event) with exactly the effect of the per-event handlers applied one
    after the other. The per-event handlers stay the reference, and the fallback that isolates an
    event that fails.

    `pipelined`: the batch handler runs every statement on the psycopg connection (`app.platform.db.driver`)
    and reads results only through psycopg's fetch methods, so a consumer may run its batches as
    pipelined transactions (statements whose results nobody reads travel together, with the COMMIT).
    """

    name: str
    handlers: Mapping[type, Handler]
    tables: tuple[str, ...]
    batch_handler: BatchHandler | None = None
    pipelined: bool = False

    @property
    def lock_key(self) -> int:
        """Advisory lock key: projector batches hold it shared, a rebuild's swap holds it exclusively."""
        return zlib.crc32(f"projection:{self.name}".encode())

    def apply(self, conn: Connection, recorded: RecordedEvent) -> None:
        """Fold one event into the projection's tables (events it does not handle are ignored)."""
        event = recorded.domain_event()
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(conn, recorded, event)

    def apply_all(
        self,
        conn: Connection,
        events: Sequence[RecordedEvent],
        set_based: bool = True,
        new_streams: Collection[str] = frozenset(),
    ) -> None:
        """Fold events, already in per-stream version order, set-based if the projection can.
        `new_streams`: streams none of whose events the projection had applied before (it has no rows
        of theirs, so the batch handler need not look for them)."""
        if set_based and self.batch_handler is not None:
            self.batch_handler(conn, events, new_streams)
            return
        for recorded in events:
            self.apply(conn, recorded)
