"""The codec: an event to its JSON payload and back, from whichever schema version it was stored with.

Money travels as decimal strings so nothing is rounded; stored payloads are never rewritten, so an
older schema version is upcast each time it is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from app.eventlog.events import EVENT_TYPES, SCHEMA_VERSIONS, DomainEvent, PersonalData, Sealed

T = TypeVar("T")

# Upcasters turn a stored payload of (type, version) into the payload of version + 1, with the
# change they make in words (published in the catalogue).
UPCASTERS: dict[tuple[str, int], tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ("ProductShipped", 1): (
        "service_level added; version 1 shipments were all sent at the standard level",
        lambda payload: {**payload, "service_level": "standard"},
    ),
    ("OrderCreated", 1): (
        "personal added (e-mail and shipping address, sealed); version 1 orders carried none",
        lambda payload: {**payload, "personal": None},
    ),
}

# Seals personal data under the data key of a customer (app/eventlog/keys.py gives one per connection).
Sealer = Callable[[str, PersonalData], Sealed]


class PersonalDataUnsealed(ValueError):
    """An event with personal data reached the codec without a sealer: it is never written in clear."""


class UnknownEventType(LookupError):
    """An envelope names an event type this code does not know."""


def to_payload(event: DomainEvent, seal: Sealer | None = None) -> dict[str, Any]:
    """The JSON payload of an event: decimals as strings, lines as objects, and personal data sealed
    under the data key of the event's customer (its `customer_id`), never in clear."""
    payload = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, PersonalData):
            if seal is None:
                raise PersonalDataUnsealed(
                    f"{type(event).__name__}.{f.name} holds personal data and no sealer was given"
                )
            value = seal(getattr(event, "customer_id"), value)  # noqa: B009  (any event type with a customer)
        payload[f.name] = _to_json(value)
    return payload


def upcast(event_type: str, payload: dict[str, Any], schema_version: int) -> dict[str, Any]:
    """The payload brought from its stored schema version to the current one."""
    for version in range(schema_version, SCHEMA_VERSIONS[event_type]):
        payload = UPCASTERS[(event_type, version)][1](payload)
    return payload


def from_payload(event_type: str, payload: dict[str, Any], schema_version: int | None = None) -> DomainEvent:
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
    if hint == PersonalData | Sealed | None:  # stored sealed; opened only by app/eventlog/keys.py
        return lambda value: None if value is None else frozen(Sealed, value)
    if get_origin(hint) is tuple and not dataclasses.is_dataclass(get_args(hint)[0]):  # tuple[str, ...]
        return tuple
    if get_origin(hint) is tuple:  # lines: tuple[SomeLine, ...], each an object of its fields
        item = get_args(hint)[0]
        fields = _conversions(item)
        return lambda value: tuple(
            frozen(item, {name: v[name] if convert is None else convert(v[name]) for name, convert in fields})
            for v in value
        )
    return None


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
