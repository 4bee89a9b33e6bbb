"""The envelope of a stored event: the event's payload with where it sits in the log and what caused it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.eventlog.codec import from_payload
from app.eventlog.events import DomainEvent


@dataclass(frozen=True)
class RecordedEvent:
    """The envelope of a stored event: where it sits in the log and what caused it."""

    event_id: str
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    def domain_event(self) -> DomainEvent:
        return from_payload(self.type, self.payload, self.schema_version)

    def to_json(self) -> dict[str, Any]:
        """The whole envelope as JSON, as it travels on the streams."""
        return {  # by hand: dataclasses.asdict deep-copies every payload, on the relay's hot path
            "event_id": self.event_id,
            "stream_id": self.stream_id,
            "version": self.version,
            "position": self.position,
            "type": self.type,
            "schema_version": self.schema_version,
            "payload": self.payload,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordedEvent:
        return cls(**{**data, "recorded_at": datetime.fromisoformat(data["recorded_at"])})
