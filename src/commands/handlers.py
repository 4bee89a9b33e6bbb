"""Command handlers: load the order from its events, decide, append, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Union, assert_never

from sqlalchemy import Connection

from app.eventlog import store as eventstore
from app.eventlog.codec import Sealer
from app.eventlog.events import Event, Line, PersonalData, ReservedLine, ShortLine
from app.eventlog.money import parse_amount
from commands.errors import OrderNotFound, VersionMismatch
from commands.order import Order


@dataclass(frozen=True)
class NewLine:
    """A line as the client sent it: the price is still a string until we know the currency."""

    sku: str
    quantity: int
    unit_price: str


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: str
    currency: str
    items: tuple[NewLine, ...]
    personal: PersonalData | None = None  # sealed by the codec on its way into the log


@dataclass(frozen=True)
class AddItem:
    order_id: str
    item: NewLine


@dataclass(frozen=True)
class RemoveItem:
    order_id: str
    sku: str


@dataclass(frozen=True)
class PayOrder:
    order_id: str
    amount: str
    reference: str


@dataclass(frozen=True)
class ShipOrder:
    order_id: str
    carrier: str
    tracking_number: str
    service_level: str = "standard"


@dataclass(frozen=True)
class DeliverOrder:
    order_id: str


@dataclass(frozen=True)
class CancelOrder:
    order_id: str
    reason: str


@dataclass(frozen=True)
class RecordReservation:
    """The fulfilment process manager holds these units of the order's tracked SKUs."""

    order_id: str
    lines: tuple[ReservedLine, ...]


@dataclass(frozen=True)
class RejectOrder:
    """The fulfilment process manager could not reserve these lines."""

    order_id: str
    short: tuple[ShortLine, ...]


@dataclass(frozen=True)
class ExpireOrder:
    """The payment deadline passed (cancels the order only if it is still unpaid)."""

    order_id: str


OrderCommand = Union[
    AddItem, RemoveItem, PayOrder, ShipOrder, DeliverOrder, CancelOrder, RecordReservation, RejectOrder, ExpireOrder
]


@dataclass(frozen=True)
class Outcome:
    """What a client needs to read its own write: the order's new version and the last position."""

    order_id: str
    version: int
    position: int
    types: tuple[str, ...] = ()


def _line(item: NewLine, currency: str) -> Line:
    return Line(item.sku, item.quantity, parse_amount(item.unit_price, currency))


def decide(order: Order, cmd: OrderCommand) -> list[Event]:
    """The order's decision on a command. A `match` over the OrderCommand union, not a table: a
    command added to the union and not handled here fails mypy at assert_never."""
    match cmd:
        case AddItem():
            return order.add_item(_line(cmd.item, order.currency))
        case RemoveItem():
            return order.remove_item(cmd.sku)
        case PayOrder():
            return order.pay(parse_amount(cmd.amount, order.currency), cmd.reference)
        case ShipOrder():
            return order.ship(cmd.carrier, cmd.tracking_number, cmd.service_level)
        case DeliverOrder():
            return order.deliver()
        case CancelOrder():
            return order.cancel(cmd.reason)
        case RecordReservation():
            return order.record_reservation(cmd.lines)
        case RejectOrder():
            return order.reject(cmd.short)
        case ExpireOrder():
            return order.expire()
        case _:
            assert_never(cmd)


def place_order(conn: Connection, cmd: PlaceOrder, metadata: dict[str, Any], seal: Sealer | None = None) -> Outcome:
    """Create a new order stream with its OrderCreated event (in the caller's transaction); its
    personal data, if any, sealed with `seal` (app/eventlog/keys.py: the customer's data key)."""
    order_id = str(uuid.uuid4())
    lines = [_line(item, cmd.currency) for item in cmd.items]
    events = Order.place(order_id, cmd.customer_id, cmd.currency, lines, cmd.personal)
    recorded = eventstore.append(conn, order_id, 0, events, metadata, seal)
    return Outcome(order_id, recorded[-1].version, recorded[-1].position, tuple(e.type for e in recorded))


def handle(
    conn: Connection, cmd: OrderCommand, metadata: dict[str, Any], expected_versions: frozenset[int] | None = None
) -> Outcome:
    """Load the order, decide, append (in the caller's transaction). `expected_versions` are those
    If-Match named: the command applies only if the order is at one of them."""
    history = eventstore.load(conn, cmd.order_id)
    if not history:
        raise OrderNotFound(f"no order {cmd.order_id}")
    order = Order.fold(cmd.order_id, (e.domain_event() for e in history))
    if expected_versions is not None and order.version not in expected_versions:
        named = ", ".join(str(v) for v in sorted(expected_versions)) or "no version of it"
        raise VersionMismatch(f"order {cmd.order_id} is at version {order.version}, not {named}")
    events = decide(order, cmd)
    recorded = eventstore.append(conn, cmd.order_id, order.version, events, metadata)
    return Outcome(cmd.order_id, recorded[-1].version, recorded[-1].position, tuple(e.type for e in recorded))
