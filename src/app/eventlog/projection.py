"""What a projection is, as the consumer-group runner sees it: a name, its tables and one apply."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent

# (connection, events in per-stream version order, streams none of whose events were applied before)
Apply = Callable[[Connection, Sequence[RecordedEvent], Collection[str]], None]


@dataclass(frozen=True)
class Projection:
    """A read model: its consumer-group name, the tables it owns (a rebuild replaces exactly these,
    plus the projection's checkpoints), and `apply`, which folds a batch of events into them.

    There is one form of the rules: `apply` loads the rows the batch touches, folds the events onto
    them in memory and writes them back (a few statements per table, whatever the batch size). One
    event is applied as a batch of one, through the same code: that is how a poison event is isolated.
    The streams in the third argument have no rows yet, so `apply` need not look for them.

    `pipelined`: `apply` runs every statement on the psycopg connection (`app.platform.db.driver`)
    and reads results only through psycopg's fetch methods, so a consumer may run its batches as
    pipelined transactions (statements whose results nobody reads travel together, with the COMMIT).
    """

    name: str
    tables: tuple[str, ...]
    apply: Apply
    pipelined: bool = False
    # At most this many events per transaction (None: the consumer's batch size). A consumer whose
    # transaction appends to streams that clients write too keeps it short: a client's command on
    # the same order waits for it to commit.
    max_batch: int | None = None

    def batch_size(self, default: int) -> int:
        return default if self.max_batch is None else min(default, self.max_batch)

    @property
    def lock_key(self) -> int:
        """Advisory lock key: projector batches hold it shared, a rebuild's swap holds it exclusively."""
        return zlib.crc32(f"projection:{self.name}".encode())
