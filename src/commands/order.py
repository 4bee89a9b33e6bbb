"""The Order aggregate: pure Python, no Flask or SQLAlchemy.

Decisions (`place`, `add_item`, ...) check the rules and return new events or raise a DomainError;
`apply` folds an event into state. State is only ever changed by applying events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import assert_never

from app.eventlog.events import (
    CustomerDataErased,
    DomainEvent,
    Event,
    ItemAdded,
    ItemRemoved,
    Line,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    OrderRejected,
    OrderStatus,
    PaymentProcessed,
    PersonalData,
    ProductShipped,
    ReservedLine,
    Sealed,
    ShortLine,
    StockAdjusted,
    StockReceived,
    StockReserved,
    UnitsReleased,
    UnitsReserved,
    UnitsShipped,
)
from app.eventlog.money import AMOUNT_LIMIT, format_amount
from commands.errors import InvalidTransition, ItemNotFound, LimitExceeded

MAX_LINES = 100
MAX_QUANTITY = 10_000
PAYMENT_TIMEOUT = "payment timeout"  # the reason of a cancellation by the payment deadline


@dataclass
class Order:
    id: str
    version: int = 0
    status: OrderStatus = OrderStatus.PENDING
    customer_id: str = ""
    currency: str = ""
    lines: dict[str, Line] = field(default_factory=dict)
    paid_amount: Decimal = Decimal(0)
    personal: PersonalData | Sealed | None = None  # as its OrderCreated carried it (sealed, once stored)
    reserved: tuple[ReservedLine, ...] | None = None  # the stock held for it (None: none recorded yet)
    # units of each SKU on the order when its reservation was last recorded: a line unchanged since
    # then and not among `reserved` was of an untracked SKU, and stays unlimited for this order
    lines_when_reserved: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((line.quantity * line.unit_price for line in self.lines.values()), Decimal(0))

    @classmethod
    def fold(cls, order_id: str, events: Iterable[DomainEvent]) -> Order:
        """The order as its events left it."""
        order = cls(id=order_id)
        for event in events:
            order.apply(event)
        return order

    # decisions -----------------------------------------------------------------------------

    @staticmethod
    def place(
        order_id: str, customer_id: str, currency: str, lines: list[Line], personal: PersonalData | None = None
    ) -> list[Event]:
        if not lines:
            raise InvalidTransition("an order needs at least one item")
        merged = Order(id=order_id, currency=currency)
        for line in lines:
            merged._check_line(line)
            merged.lines[line.sku] = _merge(merged.lines.get(line.sku), line)
        merged._check_total(merged.total)
        return [OrderCreated(order_id, customer_id, currency, tuple(merged.lines.values()), personal)]

    def add_item(self, line: Line) -> list[Event]:
        self._require(OrderStatus.PENDING, "add items to")
        self._check_line(line)
        self._check_total(self.total + line.quantity * line.unit_price)
        return [ItemAdded(self.id, line.sku, line.quantity, line.unit_price)]

    def remove_item(self, sku: str) -> list[Event]:
        self._require(OrderStatus.PENDING, "remove items from")
        if sku not in self.lines:
            raise ItemNotFound(f"order {self.id} has no item with SKU {sku!r}")
        return [ItemRemoved(self.id, sku)]

    def pay(self, amount: Decimal, reference: str) -> list[Event]:
        self._require(OrderStatus.PENDING, "pay")
        if self.total == 0:
            raise InvalidTransition("cannot pay an order whose total is zero")
        if amount != self.total:
            raise InvalidTransition(f"payment must equal the order total {self.total} {self.currency}, got {amount}")
        return [PaymentProcessed(self.id, amount, reference)]

    def ship(self, carrier: str, tracking_number: str, service_level: str = "standard") -> list[Event]:
        self._require(OrderStatus.PAID, "ship")
        return [ProductShipped(self.id, carrier, tracking_number, service_level)]

    def deliver(self) -> list[Event]:
        self._require(OrderStatus.SHIPPED, "deliver")
        return [OrderDelivered(self.id)]

    def cancel(self, reason: str) -> list[Event]:
        if self.status not in (OrderStatus.PENDING, OrderStatus.PAID):
            raise InvalidTransition(f"cannot cancel an order that is {self.status.value}")
        refund = self.paid_amount if self.status is OrderStatus.PAID else None
        return [OrderCancelled(self.id, reason, refund)]

    def stock_wanted(self) -> dict[str, int]:
        """The units of each SKU the order should hold: every line, but those whose SKU was
        untracked when its reservation was recorded and that have not changed since (a SKU tracked
        later does not take back what was sold as unlimited)."""
        held = {line.sku for line in self.reserved or ()}
        return {
            sku: line.quantity
            for sku, line in self.lines.items()
            if self.reserved is None or sku in held or self.lines_when_reserved.get(sku) != line.quantity
        }

    # decisions of the fulfilment process manager (workers/fulfilment), through the same handlers

    def record_reservation(self, lines: tuple[ReservedLine, ...]) -> list[Event]:
        """Stock is held for every tracked line (nothing to record if that is what was recorded)."""
        if self.status not in (OrderStatus.PENDING, OrderStatus.PAID):
            raise InvalidTransition(f"cannot reserve stock for an order that is {self.status.value}")
        return [] if self.reserved == lines else [StockReserved(self.id, lines)]

    def reject(self, short: tuple[ShortLine, ...]) -> list[Event]:
        """Stock cannot cover the order: it is closed, and refunded if it had been paid."""
        if self.status not in (OrderStatus.PENDING, OrderStatus.PAID):
            raise InvalidTransition(f"cannot reject an order that is {self.status.value}")
        refund = self.paid_amount if self.status is OrderStatus.PAID else None
        return [OrderRejected(self.id, "insufficient stock", short, refund)]

    def expire(self) -> list[Event]:
        """The payment deadline passed: an order still unpaid is cancelled (a paid one is not)."""
        self._require(OrderStatus.PENDING, "expire")
        return [OrderCancelled(self.id, PAYMENT_TIMEOUT, None)]

    def _require(self, status: OrderStatus, action: str) -> None:
        if self.status is not status:
            raise InvalidTransition(f"cannot {action} an order that is {self.status.value}")

    def _check_line(self, line: Line) -> None:
        current = self.lines.get(line.sku)
        if current is not None and current.unit_price != line.unit_price:
            raise InvalidTransition(
                f"SKU {line.sku!r} is already on the order at {current.unit_price}; remove it to change its price"
            )
        if current is not None and current.quantity + line.quantity > MAX_QUANTITY:
            raise LimitExceeded(f"at most {MAX_QUANTITY} of one SKU per order")
        if current is None and len(self.lines) >= MAX_LINES:
            raise LimitExceeded(f"an order holds at most {MAX_LINES} different SKUs")

    def _check_total(self, total: Decimal) -> None:
        """A total must stay payable: below the largest amount a payment (or a refund) can carry."""
        if total >= AMOUNT_LIMIT:
            raise LimitExceeded(
                f"the order total would be {format_amount(total, self.currency)} {self.currency};"
                f" an order total must stay below {AMOUNT_LIMIT:,} (the largest payable amount)"
            )

    # state changes -------------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        """Fold one event into the order's state. A `match` over the Event union, not a table: an
        event type added to the union and not handled here fails mypy at assert_never."""
        match event:
            case OrderCreated():
                self.customer_id, self.currency = event.customer_id, event.currency
                self.lines = {line.sku: line for line in event.lines}
                self.personal = event.personal
            case ItemAdded():
                self.lines[event.sku] = _merge(
                    self.lines.get(event.sku), Line(event.sku, event.quantity, event.unit_price)
                )
            case ItemRemoved():
                del self.lines[event.sku]
            case PaymentProcessed():
                self.status, self.paid_amount = OrderStatus.PAID, event.amount
            case ProductShipped():
                self.status = OrderStatus.SHIPPED
            case OrderDelivered():
                self.status = OrderStatus.DELIVERED
            case OrderCancelled():
                self.status = OrderStatus.CANCELLED
            case StockReserved():
                self.reserved = event.lines
                self.lines_when_reserved = {sku: line.quantity for sku, line in self.lines.items()}
            case OrderRejected():
                self.status = OrderStatus.REJECTED
            case (
                StockReceived() | StockAdjusted() | UnitsReserved() | UnitsReleased() | UnitsShipped()
                | CustomerDataErased()
            ):  # fmt: skip
                raise TypeError(f"{type(event).__name__} is another stream's event, not one of order {self.id}")
            case _:
                assert_never(event)
        self.version += 1


def _merge(current: Line | None, line: Line) -> Line:
    if current is None:
        return line
    return Line(line.sku, current.quantity + line.quantity, line.unit_price)
