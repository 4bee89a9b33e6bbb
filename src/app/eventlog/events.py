"""The event types: orderstream's published language.

Every event is a frozen dataclass named in the past tense. Its payload is JSON with money as decimal
strings (app.eventlog.codec); `SCHEMA_VERSIONS` says which payload shape is current for each type.
Consumers outside this code base read the catalogue (app.eventlog.catalogue, published in the OpenAPI
document) to learn the shapes. The `Event` union is the one list of event types: the registry below is
derived from it, and the aggregate's `match` over it fails mypy when a member is left unhandled.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Union, get_args


class OrderStatus(Enum):
    """Where an order stands: pending -> paid -> shipped -> delivered, or cancelled (by its customer
    or by the payment deadline) or rejected (its stock was short) from pending or paid. Published with
    the events: the aggregate's rules and the status a projection shows both read these values, so
    they are written here once."""

    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Line:
    """One SKU on an order: how many, at what unit price."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Address:
    """Where an order goes (personal data)."""

    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class PersonalData:
    """A customer's personal data, as a command brings it: never stored like this. A field of this
    type is sealed by the codec (app/eventlog/codec.py) under the data key of the event's customer
    before the event is written, and is read back as `Sealed`: mark a field personal by its type."""

    email: str | None
    shipping_address: Address | None


@dataclass(frozen=True)
class Sealed:
    """Personal data as it is stored: AES-256-GCM ciphertext under data key `key_id` of customer
    `subject` (app/eventlog/keys.py). Once that key is destroyed, nothing can open it again."""

    subject: str
    key_id: str
    ciphertext: str


@dataclass(frozen=True)
class OrderCreated:
    """A customer placed an order with its first items, and, since schema version 2, maybe its
    personal data (e-mail, shipping address), sealed under the customer's data key."""

    order_id: str
    customer_id: str
    currency: str
    lines: tuple[Line, ...]
    personal: PersonalData | Sealed | None = None  # since schema version 2; version 1 events: None


@dataclass(frozen=True)
class ItemAdded:
    """Units of a SKU were added to a pending order (quantities of a SKU already there add up)."""

    order_id: str
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class ItemRemoved:
    """A SKU was removed from a pending order."""

    order_id: str
    sku: str


@dataclass(frozen=True)
class PaymentProcessed:
    """The order was paid, for exactly its total."""

    order_id: str
    amount: Decimal
    reference: str


@dataclass(frozen=True)
class ProductShipped:
    """A paid order was handed to a carrier."""

    order_id: str
    carrier: str
    tracking_number: str
    service_level: str  # since schema version 2; version 1 events are upcast to "standard"


@dataclass(frozen=True)
class OrderDelivered:
    """A shipped order reached the customer."""

    order_id: str


@dataclass(frozen=True)
class OrderCancelled:
    """A pending or paid order was cancelled; refund_amount is set when it had been paid."""

    order_id: str
    reason: str
    refund_amount: Decimal | None


@dataclass(frozen=True)
class ReservedLine:
    """Units of one tracked SKU held in stock for an order."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class StockReserved:
    """Every tracked line of the order is held in stock (recorded by the fulfilment process manager
    after the reservations; `lines` is empty when the order holds only untracked SKUs, and a later
    StockReserved replaces the earlier one when the order's items changed)."""

    order_id: str
    lines: tuple[ReservedLine, ...]


@dataclass(frozen=True)
class ShortLine:
    """A SKU of an order that stock could not cover: units asked for, units available."""

    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class OrderRejected:
    """The order could not be fulfilled (its stock was short) and is closed; refund_amount is set
    when it had been paid (the compensation: never paid without stock)."""

    order_id: str
    reason: str
    short: tuple[ShortLine, ...]
    refund_amount: Decimal | None


Event = Union[
    OrderCreated, ItemAdded, ItemRemoved, PaymentProcessed, ProductShipped, OrderDelivered, OrderCancelled,
    StockReserved, OrderRejected,
]  # fmt: skip


# Inventory: the second bounded context. A SKU's stream is `inventory:<SKU>` (inventory_stream);
# quantities are units. It is tracked from its first StockReceived; a SKU never received is unlimited.


@dataclass(frozen=True)
class StockReceived:
    """Units of a SKU arrived in stock (the first receipt starts tracking the SKU)."""

    sku: str
    quantity: int
    reference: str


@dataclass(frozen=True)
class StockAdjusted:
    """The stock on hand was corrected by `quantity` units (negative: fewer), never below what is reserved."""

    sku: str
    quantity: int
    reason: str


@dataclass(frozen=True)
class UnitsReserved:
    """Units on hand were set aside for an order (available falls, on hand does not)."""

    sku: str
    order_id: str
    quantity: int


@dataclass(frozen=True)
class UnitsReleased:
    """Units an order held were given back: all of them, or those beyond its lowered line (available
    rises by `quantity`)."""

    sku: str
    order_id: str
    quantity: int


@dataclass(frozen=True)
class UnitsShipped:
    """An order's reserved units left the stock: on hand and reserved both fall."""

    sku: str
    order_id: str
    quantity: int


InventoryEvent = Union[StockReceived, StockAdjusted, UnitsReserved, UnitsReleased, UnitsShipped]


@dataclass(frozen=True)
class CustomerDataErased:
    """A customer's personal data was erased: its data keys were destroyed, so every sealed copy of
    it, in any event, row or backup of the log, can no longer be read. Holds no personal data."""

    customer_id: str
    key_ids: tuple[str, ...]


CustomerEvent = Union[CustomerDataErased]  # a customer's stream: `customer:<id>`
DomainEvent = Union[Event, InventoryEvent, CustomerEvent]  # what the log holds: every bounded context's events
CUSTOMER_PREFIX = "customer:"


def customer_stream(customer_id: str) -> str:
    return CUSTOMER_PREFIX + customer_id


INVENTORY_PREFIX = "inventory:"


def inventory_stream(sku: str) -> str:
    """The stream id of a SKU's stock (order streams are bare UUIDs, so the two never collide)."""
    return INVENTORY_PREFIX + sku


def is_inventory_stream(stream_id: str) -> bool:
    return stream_id.startswith(INVENTORY_PREFIX)


def is_order_stream(stream_id: str) -> bool:
    """Order streams are bare UUIDs; every other stream is named `<context>:<id>`."""
    return ":" not in stream_id


# Every event type by the name it is stored under.
EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.__name__: cls for cls in (*get_args(Event), *get_args(InventoryEvent), CustomerDataErased)
}
SCHEMA_VERSIONS: dict[str, int] = {**dict.fromkeys(EVENT_TYPES, 1), "ProductShipped": 2, "OrderCreated": 2}
