"""The projections' rules as pure folds: given these events, the rows are these (no database, no Redis)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from app.eventlog.codec import to_payload
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    SCHEMA_VERSIONS,
    Event,
    ItemAdded,
    ItemRemoved,
    Line,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    PaymentProcessed,
    ProductShipped,
)
from queries.order_summaries.fold import OrderRows, RowConflict, fold_batch
from queries.sales_stats import fold as sales

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def recorded(events: list[tuple[str, Event]], start: datetime = T0) -> list[RecordedEvent]:
    """Envelopes as the event store gives them: versions per order, positions and times in log order."""
    versions: dict[str, int] = {}
    log = []
    for position, (order_id, event) in enumerate(events, start=1):
        versions[order_id] = versions.get(order_id, 0) + 1
        kind = type(event).__name__
        log.append(
            RecordedEvent(
                event_id=str(uuid.uuid4()), stream_id=order_id, version=versions[order_id], position=position,
                type=kind, schema_version=SCHEMA_VERSIONS[kind], payload=to_payload(event), metadata={},
                recorded_at=start + timedelta(minutes=30 * position),
            )
        )  # fmt: skip
    return log


def summaries(log: list[RecordedEvent], orders: dict[str, OrderRows] | None = None) -> dict[str, OrderRows]:
    orders = orders if orders is not None else {e.stream_id: OrderRows(e.stream_id, None) for e in log}
    fold_batch(orders, log)
    return orders


def test_an_order_placed_edited_paid_shipped_and_delivered_has_its_summary_and_items() -> None:
    o = "order-1"
    log = recorded([
        (o, OrderCreated(o, "c-1", "EUR", (Line("A", 2, Decimal("9.99")), Line("B", 1, Decimal("0.5"))))),
        (o, ItemAdded(o, "A", 1, Decimal("9.990"))),  # quantities add up; the last price wins
        (o, ItemRemoved(o, "B")),
        (o, ItemRemoved(o, "missing")),  # nothing to remove: only the stamp moves
        (o, PaymentProcessed(o, Decimal("29.97"), "p-1")),
        (o, ProductShipped(o, "DHL", "T-1", "express")),
        (o, OrderDelivered(o)),
    ])  # fmt: skip
    order = summaries(log)[o]
    assert order.items == {"A": (3, Decimal("9.990"))}
    assert order.summary == {
        "order_id": o, "customer_id": "c-1", "currency": "EUR", "status": "delivered",
        "total": Decimal("29.970"), "paid_amount": Decimal("29.97"), "refunded_amount": Decimal(0),
        "carrier": "DHL", "tracking_number": "T-1", "service_level": "express", "cancellation_reason": None,
        "version": 7, "last_position": 7, "created_at": log[0].recorded_at, "updated_at": log[-1].recorded_at,
        "personal": None,
    }  # fmt: skip
    assert (order.summary_changed, order.items_changed, order.stored_summary) == (True, True, False)


def test_a_paid_cancellation_records_the_refund_and_a_pending_one_none() -> None:
    paid, pending = "order-paid", "order-pending"
    log = recorded([
        (paid, OrderCreated(paid, "c-1", "EUR", (Line("A", 1, Decimal("5")),))),
        (pending, OrderCreated(pending, "c-1", "EUR", ())),
        (paid, PaymentProcessed(paid, Decimal("5"), "p-1")),
        (paid, OrderCancelled(paid, "changed mind", Decimal("5"))),
        (pending, OrderCancelled(pending, "late", None)),
    ])  # fmt: skip
    orders = summaries(log)
    rows = {o: orders[o].summary or {} for o in (paid, pending)}
    assert [(r["status"], r["refunded_amount"], r["cancellation_reason"], r["total"]) for r in rows.values()] == [
        ("cancelled", Decimal("5"), "changed mind", Decimal("5")),
        ("cancelled", Decimal(0), "late", Decimal(0)),
    ]
    assert orders[pending].items_changed is False  # no lines: order_items is not written for it


def test_a_known_order_is_folded_onto_its_stored_rows_and_its_total_recounted_once() -> None:
    o = "order-known"
    stored = OrderRows(o, None, {"A": (2, Decimal("1.50"))}, stored_summary=True, stored_items=True)
    stored.summary = {"order_id": o, "status": "pending", "total": Decimal("3.00"), "version": 1}
    log = recorded([(o, OrderCreated(o, "c", "EUR", ())), (o, ItemAdded(o, "B", 4, Decimal("0.25")))])[1:]
    order = summaries(log, {o: stored})[o]
    assert order.items == {"A": (2, Decimal("1.50")), "B": (4, Decimal("0.25"))}
    assert order.summary is not None
    assert (order.summary["total"], order.summary["version"]) == (Decimal("4.00"), 2)


def test_events_of_an_order_without_a_summary_change_only_its_items() -> None:
    """What the per-event UPDATEs did on a missing row: nothing; items still land (an order created
    before the projection's checkpoints, say)."""
    o = "order-orphan"
    log = recorded([(o, OrderCreated(o, "c", "EUR", ())), (o, ItemAdded(o, "A", 1, Decimal("2")))])[1:]
    order = summaries(log)[o]
    assert (order.summary, order.summary_changed, order.items) == (None, False, {"A": (1, Decimal("2"))})


def test_creating_an_order_that_has_rows_is_a_conflict() -> None:
    o = "order-twice"
    log = recorded([(o, OrderCreated(o, "c", "EUR", (Line("A", 1, Decimal(1)),)))])
    with pytest.raises(RowConflict):
        summaries(log, {o: OrderRows(o, {"order_id": o}, stored_summary=True)})
    with pytest.raises(RowConflict):
        summaries(log, {o: OrderRows(o, None, {"A": (1, Decimal(1))}, stored_items=True)})


def test_exact_decimals_whatever_their_number_of_digits() -> None:
    o = "order-exact"
    price = Decimal("0." + "1" * 40)
    log = recorded([(o, OrderCreated(o, "c", "EUR", (Line("A", 3, price),)))])
    assert (summaries(log)[o].summary or {})["total"] == Decimal("0." + "3" * 40)


def test_sales_count_orders_revenue_and_refunds_per_utc_day_and_customer() -> None:
    a, b, jpy = "order-a", "order-b", "order-jpy"
    log = recorded([
        (a, OrderCreated(a, "c-1", "EUR", ())),  # 23:30 UTC on March 1st
        (a, ItemAdded(a, "A", 1, Decimal("10"))),  # not a sale
        (b, OrderCreated(b, "c-1", "EUR", ())),  # 00:30 on March 2nd
        (a, PaymentProcessed(a, Decimal("10"), "p-1")),
        (jpy, OrderCreated(jpy, "c-2", "JPY", ())),
        (b, OrderCancelled(b, "late", None)),  # nothing to refund
        (a, ProductShipped(a, "DHL", "T", "standard")),
        (a, OrderCancelled(a, "broken", Decimal("4"))),
    ])  # fmt: skip
    totals = sales.totals(sales.fold_batch(log), {})
    march1, march2 = date(2026, 3, 1), date(2026, 3, 2)
    assert [order.order_id for order in totals.new_orders] == [a, b, jpy]
    assert totals.days == {
        (march1, "EUR"): sales.DaySales(orders=1),
        (march2, "EUR"): sales.DaySales(orders=1, revenue=Decimal("10"), refunds=Decimal("4")),
        (march2, "JPY"): sales.DaySales(orders=1),
    }
    assert totals.customers == {
        ("c-1", "EUR"): sales.CustomerSales(2, 1, Decimal("6"), log[0].recorded_at, log[2].recorded_at),
        ("c-2", "JPY"): sales.CustomerSales(1, 0, Decimal(0), log[4].recorded_at, log[4].recorded_at),
    }


def test_sales_of_a_stored_order_take_its_customer_and_currency_from_its_row() -> None:
    o = "order-stored"
    log = recorded([(o, OrderCreated(o, "c-9", "EUR", ())), (o, PaymentProcessed(o, Decimal("7"), "p"))])[1:]
    totals = sales.totals(sales.fold_batch(log), {o: sales.SalesOrder(o, "c-9", "GBP")})
    assert totals.new_orders == []
    assert totals.days == {(log[0].recorded_at.date(), "GBP"): sales.DaySales(revenue=Decimal("7"))}
    assert totals.customers == {("c-9", "GBP"): sales.CustomerSales(paid_orders=1, lifetime_value=Decimal("7"))}


def test_sales_of_an_unknown_order_or_an_order_created_twice_fail() -> None:
    o = "order-unknown"
    log = recorded([(o, OrderCreated(o, "c", "EUR", ())), (o, PaymentProcessed(o, Decimal("1"), "p"))])
    with pytest.raises(LookupError, match="has no order"):
        sales.totals(sales.fold_batch(log[1:]), {})
    with pytest.raises(LookupError, match="already holds"):
        sales.totals(sales.fold_batch(log[:1]), {o: sales.SalesOrder(o, "c", "EUR")})


def test_events_that_are_no_sale_leave_no_trace() -> None:
    o = "order-quiet"
    log = recorded([
        (o, OrderCreated(o, "c", "EUR", ())), (o, ItemAdded(o, "A", 1, Decimal("1"))), (o, ItemRemoved(o, "A")),
        (o, ProductShipped(o, "DHL", "T", "standard")), (o, OrderDelivered(o)), (o, OrderCancelled(o, "r", None)),
    ])[1:]  # fmt: skip
    assert sales.fold_batch(log) == {}
