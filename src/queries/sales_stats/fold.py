"""The rules of sales_stats: what each event adds to the sales of its day and of its customer.

Pure, no I/O (an import-linter contract keeps it so). A batch is folded in two steps: `fold` gathers
each order's contribution from its events alone (an order created, revenue and refunds by day);
`totals` then rolls the contributions up by (day, currency) and (customer, currency), given the
customer and currency of the orders the batch did not create (their sales_orders rows). Everything
is a sum, a least or a greatest, so the result does not depend on how the log is cut into batches.
Days are UTC days of the event's recorded time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import assert_never

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
    PaymentProcessed,
    ProductShipped,
    StockAdjusted,
    StockReceived,
    StockReserved,
    UnitsReleased,
    UnitsReserved,
    UnitsShipped,
)


@dataclass(frozen=True)
class SalesOrder:
    """A sales_orders row: whose order it is, in which currency."""

    order_id: str
    customer_id: str
    currency: str


@dataclass
class OrderSales:
    """One order's contribution in a batch: its creation (if in the batch), payments and refunds."""

    created: SalesOrder | None = None
    created_at: datetime | None = None
    paid_orders: int = 0
    revenue: dict[date, Decimal] = field(default_factory=dict)
    refunds: dict[date, Decimal] = field(default_factory=dict)


@dataclass
class DaySales:
    """Increments of a sales_daily row."""

    orders: int = 0
    revenue: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)


@dataclass
class CustomerSales:
    """Increments of a customer_stats row; first and last order times are a least and a greatest."""

    orders: int = 0
    paid_orders: int = 0
    lifetime_value: Decimal = Decimal(0)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None


@dataclass
class SalesTotals:
    """A batch's effect on the sales tables: new sales_orders rows, and increments by key."""

    new_orders: list[SalesOrder] = field(default_factory=list)
    days: dict[tuple[date, str], DaySales] = field(default_factory=dict)
    customers: dict[tuple[str, str], CustomerSales] = field(default_factory=dict)


def fold(orders: dict[str, OrderSales], recorded: RecordedEvent, event: DomainEvent) -> None:
    """One event's contribution to its order's sales."""
    day = recorded.recorded_at.astimezone(UTC).date()
    match event:
        case OrderCreated(order_id=order_id, customer_id=customer, currency=currency):
            order = orders.setdefault(order_id, OrderSales())
            if order.created is not None:
                raise LookupError(f"sales_orders already holds {order_id}")
            order.created, order.created_at = SalesOrder(order_id, customer, currency), recorded.recorded_at
        case PaymentProcessed(order_id=order_id, amount=amount):
            order = orders.setdefault(order_id, OrderSales())
            order.paid_orders += 1
            order.revenue[day] = order.revenue.get(day, Decimal(0)) + amount
        case (
            OrderCancelled(order_id=order_id, refund_amount=refund)
            | OrderRejected(order_id=order_id, refund_amount=refund)
        ):
            if refund is not None:  # a pending order closed: no sale to take back
                order = orders.setdefault(order_id, OrderSales())
                order.refunds[day] = order.refunds.get(day, Decimal(0)) + refund
        case ItemAdded() | ItemRemoved() | ProductShipped() | OrderDelivered() | StockReserved():
            pass  # sales count orders, payments and refunds only
        case (
            StockReceived() | StockAdjusted() | UnitsReserved() | UnitsReleased() | UnitsShipped()
            | CustomerDataErased()
        ):  # fmt: skip
            pass  # stock is another bounded context; erasure changes no sale
        case _:
            assert_never(event)


def fold_batch(events: Iterable[RecordedEvent]) -> dict[str, OrderSales]:
    """The contributions of a batch's events, by order."""
    orders: dict[str, OrderSales] = {}
    with localcontext(prec=1000):  # NUMERIC is exact: so are the sums here
        for recorded in events:
            fold(orders, recorded, recorded.domain_event())
    return orders


def totals(orders: Mapping[str, OrderSales], stored: Mapping[str, SalesOrder]) -> SalesTotals:
    """The contributions rolled up by day and by customer; `stored`: the sales_orders rows of the
    orders the batch did not create (an order it creates must not be among them)."""
    result = SalesTotals()
    with localcontext(prec=1000):
        for order_id, order in sorted(orders.items()):
            if order.created is not None and order_id in stored:
                raise LookupError(f"sales_orders already holds {order_id}")
            row = order.created or stored.get(order_id)
            if row is None:
                raise LookupError(f"sales_orders has no order {order_id}")
            _add(result, row, order)
    return result


def _add(result: SalesTotals, row: SalesOrder, order: OrderSales) -> None:
    customer = result.customers.setdefault((row.customer_id, row.currency), CustomerSales())
    if order.created is not None and order.created_at is not None:
        result.new_orders.append(row)
        result.days.setdefault((order.created_at.astimezone(UTC).date(), row.currency), DaySales()).orders += 1
        customer.orders += 1
        at, first, last = order.created_at, customer.first_order_at, customer.last_order_at
        customer.first_order_at, customer.last_order_at = min(first or at, at), max(last or at, at)
    for day, amount in order.revenue.items():
        result.days.setdefault((day, row.currency), DaySales()).revenue += amount
    for day, amount in order.refunds.items():
        result.days.setdefault((day, row.currency), DaySales()).refunds += amount
    customer.paid_orders += order.paid_orders
    customer.lifetime_value += sum(order.revenue.values(), Decimal(0)) - sum(order.refunds.values(), Decimal(0))
