"""The Sku aggregate: one SKU's stock, pure Python like commands/order.py.

A SKU is tracked from its first receipt (version 0 means untracked: nothing was ever received, and
the SKU is unlimited, like a digital good, so orders of it go on as before). Available is what is on
hand minus what is reserved; reservations are kept per order, so releasing or shipping an order's
units moves exactly what it reserved, and reserving twice for one order is a no-op (a redelivered
event reserves once). State changes only by applying events; `snapshot`/`from_snapshot` let the
handlers start from a stored state instead of the whole stream (snapshots are never the truth).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, assert_never

from app.eventlog.events import (
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
from commands.errors import BelowReserved, InsufficientStock, InvalidTransition, SkuNotFound

# Bumped when the snapshot's shape or the rules that produce it change: older snapshots are ignored.
SNAPSHOT_SCHEMA = 1


@dataclass
class Sku:
    sku: str
    version: int = 0
    on_hand: int = 0
    reservations: dict[str, int] = field(default_factory=dict)  # units reserved, by order id

    @property
    def tracked(self) -> bool:
        return self.version > 0

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @classmethod
    def fold(cls, sku: str, events: Iterable[DomainEvent], start: Sku | None = None) -> Sku:
        """The SKU as its events left it (after `start`, a snapshot's state, when given)."""
        stock = start if start is not None else cls(sku=sku)
        for event in events:
            stock.apply(event)
        return stock

    # decisions -----------------------------------------------------------------------------

    def receive(self, quantity: int, reference: str) -> list[DomainEvent]:
        if quantity <= 0:
            raise InvalidTransition("a receipt brings at least one unit")
        return [StockReceived(self.sku, quantity, reference)]

    def adjust(self, quantity: int, reason: str) -> list[DomainEvent]:
        self._require_tracked()
        if quantity == 0:
            raise InvalidTransition("an adjustment changes the stock by at least one unit")
        if self.on_hand + quantity < self.reserved:
            raise BelowReserved(
                f"SKU {self.sku} has {self.on_hand} on hand and {self.reserved} reserved:"
                f" adjusting by {quantity} would leave fewer on hand than reserved"
            )
        return [StockAdjusted(self.sku, quantity, reason)]

    def reserve(self, order_id: str, quantity: int) -> list[DomainEvent]:
        """Make an order hold exactly `quantity` units: reserve what it lacks, or give back what it
        holds beyond that (its line was lowered). A no-op when the SKU is untracked (unlimited) or
        the order holds as many already (a redelivered event reserves once)."""
        held = self.reservations.get(order_id, 0)
        if not self.tracked or quantity == held:
            return []
        if quantity < held:
            return [UnitsReleased(self.sku, order_id, held - quantity)]
        if quantity - held > self.available:
            raise InsufficientStock.of({self.sku: (quantity, self.available + held)})
        return [UnitsReserved(self.sku, order_id, quantity - held)]

    def release(self, order_id: str) -> list[DomainEvent]:
        """Give back exactly what the order reserved (nothing if it reserved nothing)."""
        held = self.reservations.get(order_id)
        return [] if held is None else [UnitsReleased(self.sku, order_id, held)]

    def ship(self, order_id: str) -> list[DomainEvent]:
        """The order's reserved units leave the stock (nothing if it reserved nothing)."""
        held = self.reservations.get(order_id)
        return [] if held is None else [UnitsShipped(self.sku, order_id, held)]

    def _require_tracked(self) -> None:
        if not self.tracked:
            raise SkuNotFound(f"no stock was ever received for SKU {self.sku}")

    # state changes -------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        """Fold one event into the stock. A `match` over every event type: one added and not
        handled here fails mypy at assert_never."""
        match event:
            case StockReceived() | StockAdjusted():
                self.on_hand += event.quantity
            case UnitsReserved():  # an order's later reservation of a SKU adds to its earlier one
                self.reservations[event.order_id] = self.reservations.get(event.order_id, 0) + event.quantity
            case UnitsReleased():  # all it held, or part of it (its line was lowered)
                left = self.reservations.get(event.order_id, 0) - event.quantity
                if left > 0:
                    self.reservations[event.order_id] = left
                else:
                    self.reservations.pop(event.order_id, None)
            case UnitsShipped():
                self.reservations.pop(event.order_id, None)
                self.on_hand -= event.quantity
            case (
                OrderCreated() | ItemAdded() | ItemRemoved() | PaymentProcessed() | ProductShipped()
                | OrderDelivered() | OrderCancelled() | StockReserved() | OrderRejected() | CustomerDataErased()
            ):  # fmt: skip
                raise TypeError(f"{type(event).__name__} is an order event, not one of SKU {self.sku}")
            case _:
                assert_never(event)
        self.version += 1

    # snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON (its version is stored beside it)."""
        return {"on_hand": self.on_hand, "reservations": dict(self.reservations)}

    @classmethod
    def from_snapshot(cls, sku: str, version: int, state: dict[str, Any]) -> Sku:
        return cls(sku, version, int(state["on_hand"]), {k: int(v) for k, v in state["reservations"].items()})
