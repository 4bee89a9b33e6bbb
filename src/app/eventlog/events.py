"""The event catalogue: orderstream's published language.

Every event is a frozen dataclass named in the past tense. Its payload is JSON with money as decimal
strings; `SCHEMA_VERSIONS` says which payload shape is current for each type. Consumers outside this
code base read `catalogue()` (published in the OpenAPI document) to learn the shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, Union, get_type_hints

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """One SKU on an order: how many, at what unit price."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderCreated:
    """A customer placed an order with its first items."""

    order_id: str
    customer_id: str
    currency: str
    lines: tuple[Line, ...]


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


Event = Union[OrderCreated, ItemAdded, ItemRemoved, PaymentProcessed, ProductShipped, OrderDelivered, OrderCancelled]

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        OrderCreated,
        ItemAdded,
        ItemRemoved,
        PaymentProcessed,
        ProductShipped,
        OrderDelivered,
        OrderCancelled,
    )
}
SCHEMA_VERSIONS: dict[str, int] = {**dict.fromkeys(EVENT_TYPES, 1), "ProductShipped": 2}

# Upcasters turn a stored payload of (type, version) into the payload of version + 1. Stored events
# are never rewritten: old versions are upcast each time they are read.
UPCASTERS: dict[tuple[str, int], tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ("ProductShipped", 1): (
        "service_level added; version 1 shipments were all sent at the standard level",
        lambda payload: {**payload, "service_level": "standard"},
    ),
}


class UnknownEventType(LookupError):
    """An envelope names an event type this code does not know."""


def to_payload(event: Event) -> dict[str, Any]:
    """The JSON payload of an event: decimals as strings, lines as objects."""
    return {f.name: _to_json(getattr(event, f.name)) for f in dataclasses.fields(event)}


def upcast(event_type: str, payload: dict[str, Any], schema_version: int) -> dict[str, Any]:
    """The payload brought from its stored schema version to the current one."""
    for version in range(schema_version, SCHEMA_VERSIONS[event_type]):
        payload = UPCASTERS[(event_type, version)][1](payload)
    return payload


def from_payload(event_type: str, payload: dict[str, Any], schema_version: int | None = None) -> Event:
    """Rebuild the domain event from its type name and JSON payload (of any schema version)."""
    try:
        cls = EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None
    if schema_version is not None:
        payload = upcast(event_type, payload, schema_version)
    # Type hints resolved once per class, not per event (they were a fifth of a replay).
    fields = _CONVERSIONS.get(cls) or _CONVERSIONS.setdefault(cls, _conversions(cls))
    return frozen(cls, {name: payload[name] if convert is None else convert(payload[name]) for name, convert in fields})


def frozen(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen dataclass `cls` with these field values, equal to `cls(**values)`
    (tests compare) for a fraction of the cost: its __init__ sets each field through
    object.__setattr__, where this fills the new instance's dict at once. Hot paths only (replay,
    projectors); no validation, no defaults."""
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


Conversion = Callable[[Any], Any] | None  # how a field's JSON value becomes its value (None: as it is)
_CONVERSIONS: dict[type[Any], tuple[tuple[str, Conversion], ...]] = {}


def _conversions(cls: type[Any]) -> tuple[tuple[str, Conversion], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, _conversion(hints[f.name])) for f in dataclasses.fields(cls))


def _conversion(hint: Any) -> Conversion:
    if hint in (str, int):
        return None
    if hint in (Decimal, Decimal | None):
        return _decimal
    return lambda value: _from_json(hint, value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if hint in (Decimal, Decimal | None):
        return Decimal(value)
    if hint == tuple[Line, ...]:
        return tuple(Line(sku=v["sku"], quantity=v["quantity"], unit_price=Decimal(v["unit_price"])) for v in value)
    return value


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

    def domain_event(self) -> Event:
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


def catalogue() -> dict[str, Any]:
    """A description of every event type and its current schema version, for the API docs."""
    return {
        name: {
            "schema_version": SCHEMA_VERSIONS[name],
            "summary": (cls.__doc__ or "").strip(),
            "fields": {f.name: _describe(hint) for f, hint in _fields_with_hints(cls)},
            "upcasters": {
                f"{version} -> {version + 1}": UPCASTERS[(name, version)][0]
                for version in range(1, SCHEMA_VERSIONS[name])
            },
        }
        for name, cls in EVENT_TYPES.items()
    }


def _fields_with_hints(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _describe(hint: Any) -> str:
    if hint == tuple[Line, ...]:
        return "array of {sku: string, quantity: integer, unit_price: decimal string}"
    if hint in (Decimal, Decimal | None):
        return "decimal string" + (" or null" if hint != Decimal else "")
    return {str: "string", int: "integer"}.get(hint, str(hint))


def catalogue_markdown() -> str:
    """The catalogue as the Markdown page docs/events.md (kept in step by a test)."""
    lines = [
        "# Event catalogue",
        "",
        "Generated from `src/app/eventlog/events.py` by `orderstream catalogue`; a test fails when it is stale.",
        "Payloads are JSON; money is a decimal string. Stored events keep the schema version they were",
        "written with; readers upcast older versions on the fly (the log is never rewritten).",
        "",
    ]
    for name, entry in catalogue().items():
        lines += [f"## {name} (schema version {entry['schema_version']})", "", entry["summary"], ""]
        lines += ["| field | type |", "|---|---|"]
        lines += [f"| `{field}` | {kind} |" for field, kind in entry["fields"].items()]
        for step, change in entry["upcasters"].items():
            lines += ["", f"Upcaster {step}: {change}."]
        lines.append("")
    return "\n".join(lines)
