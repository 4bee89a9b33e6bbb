"""What a projection is, as the consumer-group runner sees it: a name and a routing table."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from app.events import RecordedEvent

Handler = Callable[[Connection, RecordedEvent, Any], None]


@dataclass(frozen=True)
class Projection:
    """A read model: its consumer-group name, which handler applies which event type, and the tables
    it owns (a rebuild replaces exactly these, plus the projection's checkpoints)."""

    name: str
    handlers: Mapping[type, Handler]
    tables: tuple[str, ...]

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
