"""The codec: every event type survives its JSON payload, and every stored older schema version is read
as the current one (the log is never rewritten, so upcasting is all that keeps old events readable)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from app.eventlog.codec import UPCASTERS, PersonalDataUnsealed, UnknownEventType, from_payload, to_payload
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    EVENT_TYPES,
    SCHEMA_VERSIONS,
    Address,
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

ID = "order-1"
EXAMPLES: tuple[DomainEvent, ...] = (
    OrderCreated(ID, "c-1", "EUR", (Line("A", 2, Decimal("9.99")), Line("B", 1, Decimal("0.10")))),
    ItemAdded(ID, "B", 3, Decimal("0.10")),
    ItemRemoved(ID, "B"),
    PaymentProcessed(ID, Decimal("19.98"), "psp-1"),
    ProductShipped(ID, "DHL", "T-1", "standard"),
    OrderDelivered(ID),
    OrderCancelled(ID, "r", None),
    OrderCancelled(ID, "r", Decimal("0.10")),
    StockReserved(ID, (ReservedLine("A", 2), ReservedLine("B", 1))),
    StockReserved(ID, ()),
    OrderRejected(ID, "insufficient stock", (ShortLine("A", 2, 1),), None),
    OrderRejected(ID, "insufficient stock", (ShortLine("A", 2, 0), ShortLine("B", 1, 0)), Decimal("19.98")),
    OrderCreated(ID, "c-1", "EUR", (Line("A", 1, Decimal("1.00")),), Sealed("c-1", "k-1", "b64==")),
    CustomerDataErased("c-1", ("k-1", "k-2")),
    StockReceived("A", 10, "delivery-1"),
    StockAdjusted("A", -2, "damaged"),
    UnitsReserved("A", ID, 2),
    UnitsReleased("A", ID, 2),
    UnitsShipped("A", ID, 2),
)

# A payload as it was stored at each schema version an upcaster starts from, and what it reads as now.
STORED: dict[tuple[str, int], tuple[dict[str, Any], Event]] = {
    ("ProductShipped", 1): (
        {"order_id": ID, "carrier": "DHL", "tracking_number": "T-1"},
        ProductShipped(ID, "DHL", "T-1", "standard"),
    ),
    ("OrderCreated", 1): (
        {"order_id": ID, "customer_id": "c-1", "currency": "EUR",
         "lines": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}]},
        OrderCreated(ID, "c-1", "EUR", (Line("A", 1, Decimal("1.00")),), None),
    ),
}  # fmt: skip


def test_personal_data_is_never_written_in_clear_and_is_read_back_sealed() -> None:
    data = PersonalData("ada@example.org", Address("Ada", "1 Lane", None, "London", "N1", "GB"))
    event = OrderCreated(ID, "c-1", "EUR", (Line("A", 1, Decimal("1.00")),), data)
    with pytest.raises(PersonalDataUnsealed):
        to_payload(event)
    seen: list[tuple[str, PersonalData]] = []

    def seal(subject: str, personal: PersonalData) -> Sealed:
        seen.append((subject, personal))
        return Sealed(subject, "k-1", "opaque")

    payload = to_payload(event, seal)
    assert seen == [("c-1", data)]  # sealed under the event's customer
    assert payload["personal"] == {"subject": "c-1", "key_id": "k-1", "ciphertext": "opaque"}
    assert "ada@example.org" not in str(payload) and "London" not in str(payload)
    assert from_payload("OrderCreated", payload, 2) == OrderCreated(
        ID, "c-1", "EUR", (Line("A", 1, Decimal("1.00")),), Sealed("c-1", "k-1", "opaque")
    )


def envelope(event_type: str, payload: dict[str, Any], schema_version: int) -> RecordedEvent:
    return RecordedEvent(
        "e-1", ID, 1, 1, event_type, schema_version, payload, {"actor": "test"}, datetime(2024, 5, 1, tzinfo=UTC)
    )


def test_the_examples_cover_every_event_type() -> None:
    assert {type(event).__name__ for event in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda event: type(event).__name__)
def test_payloads_round_trip_with_exact_decimal_strings(event: DomainEvent) -> None:
    """from_payload builds events without their __init__ (for speed): what it builds must be equal,
    hash equal and of the same type as the event built the ordinary way."""
    name = type(event).__name__
    payload = to_payload(event)
    assert not any(isinstance(value, Decimal | float) for value in payload.values())  # money as strings
    decoded = from_payload(name, payload)
    assert (decoded, hash(decoded), type(decoded)) == (event, hash(event), type(event))
    assert from_payload(name, payload, SCHEMA_VERSIONS[name]) == event


def test_lines_and_amounts_are_json_objects_and_decimal_strings() -> None:
    assert to_payload(EXAMPLES[0])["lines"][0] == {"sku": "A", "quantity": 2, "unit_price": "9.99"}
    assert to_payload(PaymentProcessed(ID, Decimal("19.980"), "p"))["amount"] == "19.980"  # exponent kept


def test_every_upcaster_has_a_stored_payload_to_prove_it() -> None:
    assert set(STORED) == set(UPCASTERS)


@pytest.mark.parametrize(("stored", "version"), list(STORED), ids=lambda value: str(value))
def test_stored_older_versions_read_as_the_current_event(stored: str, version: int) -> None:
    payload, current = STORED[(stored, version)]
    assert from_payload(stored, payload, schema_version=version) == current
    assert envelope(stored, payload, version).domain_event() == current
    assert payload == STORED[(stored, version)][0]  # the stored payload itself is left as it was


def test_a_current_payload_is_not_upcast() -> None:
    payload = {"order_id": ID, "carrier": "DHL", "tracking_number": "T-1", "service_level": "express"}
    assert from_payload("ProductShipped", payload, schema_version=2).service_level == "express"


def test_an_unknown_event_type_is_named() -> None:
    with pytest.raises(UnknownEventType, match="OrderTeleported"):
        from_payload("OrderTeleported", {"order_id": ID})


def test_the_envelope_round_trips_through_its_stream_json() -> None:
    recorded = envelope("ItemAdded", to_payload(EXAMPLES[1]), 1)
    assert RecordedEvent.from_json(recorded.to_json()) == recorded
    assert recorded.to_json()["recorded_at"] == "2024-05-01T00:00:00+00:00"
