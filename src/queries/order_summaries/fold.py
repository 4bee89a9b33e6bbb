"""The rules of order_summaries: how each event changes its order's summary and items, in memory.

Pure: rows in, events in, rows changed; no I/O (an import-linter contract keeps it so). The same
fold serves a batch of thousands (a rebuild), a consumer's batch and a batch of one (the fallback
that isolates a poison event). Timestamps come from the events, never from the clock, so a rebuild
yields identical rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, assert_never

from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    CustomerDataErased,
    DomainEvent,
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    OrderRejected,
    OrderStatus,
    PaymentProcessed,
    ProductShipped,
    Sealed,
    StockAdjusted,
    StockReceived,
    StockReserved,
    UnitsReleased,
    UnitsReserved,
    UnitsShipped,
)


class RowConflict(Exception):
    """The batch would insert a row that exists: it fails, as the primary key would make it."""


@dataclass
class OrderRows:
    """One order's rows while a batch is folded onto them: its summary (None if it has no row) and
    its items by SKU, (quantity, unit price); what changed, for the writes that follow."""

    order_id: str
    summary: dict[str, Any] | None
    items: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    stored_summary: bool = False  # it had a summary row before the batch
    stored_items: bool = False  # it had item rows before the batch
    summary_changed: bool = False
    items_changed: bool = False
    recount: bool = False  # the total is due: the sum over the items as they are at the end of the batch

    def touch(self, recorded: RecordedEvent, recount: bool = False, **changes: Any) -> None:
        """Set the summary's columns and the event's stamp (nothing without a summary row). With
        `recount`, the total is the items' sum: the items only change while the summary exists, each
        time with a recount, so summing them once at the end of the batch gives the same total."""
        if self.summary is None:
            return
        self.summary.update(changes, version=recorded.version, last_position=recorded.position)
        self.summary["updated_at"] = recorded.recorded_at
        self.summary_changed = True
        self.recount = self.recount or recount

    def total(self) -> Decimal:
        return sum((quantity * price for quantity, price in self.items.values()), Decimal(0))


def fold_batch(orders: dict[str, OrderRows], events: Iterable[RecordedEvent]) -> None:
    """Fold events (in per-order version order) onto the rows of their orders, then the totals due."""
    with localcontext(prec=1000):  # NUMERIC is exact: so are the sums here
        for recorded in events:
            fold(orders[recorded.stream_id], recorded, recorded.domain_event())
        for order in orders.values():
            if order.recount and order.summary is not None:
                order.summary["total"] = order.total()


def fold(order: OrderRows, recorded: RecordedEvent, event: DomainEvent) -> None:
    """One event's effect on its order's rows (every event of an order changes them)."""
    match event:
        case OrderCreated():
            _created(order, recorded, event)
        case ItemAdded(sku=sku, quantity=quantity, unit_price=price):
            held = order.items[sku][0] if sku in order.items else 0
            order.items[sku] = (held + quantity, price)
            order.items_changed = True
            order.touch(recorded, recount=True)
        case ItemRemoved(sku=sku):
            if order.items.pop(sku, None) is not None:
                order.items_changed = True
            order.touch(recorded, recount=True)
        case PaymentProcessed(amount=amount):
            order.touch(recorded, status=OrderStatus.PAID.value, paid_amount=amount)
        case ProductShipped(carrier=carrier, tracking_number=number, service_level=level):
            order.touch(
                recorded, status=OrderStatus.SHIPPED.value, carrier=carrier, tracking_number=number, service_level=level
            )
        case OrderDelivered():
            order.touch(recorded, status=OrderStatus.DELIVERED.value)
        case OrderCancelled(reason=reason, refund_amount=refund):
            refunded = refund or Decimal(0)
            order.touch(
                recorded, status=OrderStatus.CANCELLED.value, cancellation_reason=reason, refunded_amount=refunded
            )
        case StockReserved():
            order.touch(recorded)  # what is held shows in the `fulfilment` field (the process manager's state)
        case OrderRejected(reason=reason, refund_amount=refund):
            order.touch(
                recorded,
                status=OrderStatus.REJECTED.value,
                cancellation_reason=reason,
                refunded_amount=refund or Decimal(0),
            )
        case (
            StockReceived() | StockAdjusted() | UnitsReserved() | UnitsReleased() | UnitsShipped()
            | CustomerDataErased()
        ):  # fmt: skip
            pass  # stock and customers are other streams (they never reach here: see apply)
        case _:
            assert_never(event)


def _created(order: OrderRows, recorded: RecordedEvent, e: OrderCreated) -> None:
    if order.summary is not None:
        raise RowConflict(f"order_summaries already holds {order.order_id}")
    order.summary = {
        "order_id": order.order_id, "customer_id": e.customer_id, "currency": e.currency,
        "status": OrderStatus.PENDING.value,
        "total": Decimal(0), "paid_amount": Decimal(0), "refunded_amount": Decimal(0), "carrier": None,
        "tracking_number": None, "service_level": None, "cancellation_reason": None,
        "created_at": recorded.recorded_at,
        # sealed as the log holds it (opened only by a response that may show it: queries/personal.py)
        "personal": dataclasses.asdict(e.personal) if isinstance(e.personal, Sealed) else None,
    }  # fmt: skip
    for line in e.lines:
        if line.sku in order.items:
            raise RowConflict(f"order_items already holds {order.order_id} {line.sku}")
        order.items[line.sku] = (line.quantity, line.unit_price)
        order.items_changed = True
    order.touch(recorded, recount=True)
