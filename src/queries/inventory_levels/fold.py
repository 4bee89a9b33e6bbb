"""The rules of inventory_levels: how each stock event changes its SKU's row, in memory.

Pure: rows in, events in, rows changed (an import-linter contract keeps it so). Order events are
listed as ignored, so mypy still fails on an event type added and handled nowhere. Timestamps come
from the events, so a rebuild yields identical rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, assert_never

from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    INVENTORY_PREFIX,
    CustomerDataErased,
    DomainEvent,
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    OrderRejected,
    PaymentProcessed,
    ProductShipped,
    StockAdjusted,
    StockReceived,
    StockReserved,
    UnitsReleased,
    UnitsReserved,
    UnitsShipped,
)


@dataclass
class LevelRow:
    """One SKU's inventory_levels row while a batch is folded onto it (None: no row yet)."""

    sku: str
    row: dict[str, Any] | None
    stored: bool = False  # it had a row before the batch
    changed: bool = False

    def move(self, recorded: RecordedEvent, on_hand: int = 0, reserved: int = 0) -> None:
        row = self.row or {"sku": self.sku, "on_hand": 0, "reserved": 0}
        row["on_hand"] += on_hand
        row["reserved"] += reserved
        row.update(
            available=row["on_hand"] - row["reserved"],
            version=recorded.version,
            last_position=recorded.position,
            updated_at=recorded.recorded_at,
        )
        self.row, self.changed = row, True


def sku_of(stream_id: str) -> str | None:
    """The SKU a stream holds the stock of (None: not a stock stream)."""
    return stream_id[len(INVENTORY_PREFIX) :] if stream_id.startswith(INVENTORY_PREFIX) else None


def fold_batch(levels: dict[str, LevelRow], events: Iterable[RecordedEvent]) -> None:
    """Fold stock events (in per-SKU version order) onto their SKUs' rows; other events pass by."""
    for recorded in events:
        sku = sku_of(recorded.stream_id)
        if sku is not None:
            fold(levels[sku], recorded, recorded.domain_event())


def fold(level: LevelRow, recorded: RecordedEvent, event: DomainEvent) -> None:
    """One event's effect on its SKU's row."""
    match event:
        case StockReceived(quantity=quantity) | StockAdjusted(quantity=quantity):
            level.move(recorded, on_hand=quantity)
        case UnitsReserved(quantity=quantity):
            level.move(recorded, reserved=quantity)
        case UnitsReleased(quantity=quantity):
            level.move(recorded, reserved=-quantity)
        case UnitsShipped(quantity=quantity):
            level.move(recorded, on_hand=-quantity, reserved=-quantity)
        case (
            OrderCreated() | ItemAdded() | ItemRemoved() | PaymentProcessed() | ProductShipped()
            | OrderDelivered() | OrderCancelled() | StockReserved() | OrderRejected() | CustomerDataErased()
        ):  # fmt: skip
            pass  # orders are another bounded context
        case _:
            assert_never(event)
