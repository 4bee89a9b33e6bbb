"""The Order aggregate, given/when/then over events: pure, no I/O."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings, target
from hypothesis import strategies as st

from app.eventlog.events import (
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
    ProductShipped,
    ReservedLine,
    ShortLine,
    StockReserved,
)
from app.eventlog.money import InvalidAmount, check_decimal_string, format_amount, minor_units, parse_amount
from commands.errors import InvalidTransition, ItemNotFound, LimitExceeded
from commands.handlers import (
    AddItem,
    CancelOrder,
    DeliverOrder,
    ExpireOrder,
    NewLine,
    OrderCommand,
    PayOrder,
    RecordReservation,
    RejectOrder,
    RemoveItem,
    ShipOrder,
    decide,
)
from commands.order import MAX_LINES, PAYMENT_TIMEOUT, Order

ID = "order-1"
CREATED = OrderCreated(ID, "c-1", "EUR", (Line("A", 2, Decimal("9.99")),))
PAID = PaymentProcessed(ID, Decimal("19.98"), "psp-1")
SHIPPED = ProductShipped(ID, "DHL", "T-1", "standard")
CREATED_PAID_SHIPPED = (CREATED, PAID, SHIPPED)


def given(*events: object) -> Order:
    return Order.fold(ID, events)  # type: ignore[arg-type]


def test_place_merges_repeated_skus_and_refuses_an_empty_order() -> None:
    events = Order.place(ID, "c-1", "EUR", [Line("A", 1, Decimal("2")), Line("A", 2, Decimal("2"))])
    assert events == [OrderCreated(ID, "c-1", "EUR", (Line("A", 3, Decimal("2")),))]
    with pytest.raises(InvalidTransition, match="at least one item"):
        Order.place(ID, "c-1", "EUR", [])


def test_place_refuses_one_sku_at_two_prices() -> None:
    with pytest.raises(InvalidTransition, match="already on the order"):
        Order.place(ID, "c-1", "EUR", [Line("A", 1, Decimal("2")), Line("A", 1, Decimal("3"))])


def test_fold_tracks_version_status_and_total() -> None:
    order = given(CREATED, ItemAdded(ID, "B", 1, Decimal("0.02")), ItemAdded(ID, "A", 1, Decimal("9.99")))
    assert (order.version, order.status.value, order.total) == (3, "pending", Decimal("29.99"))


def test_add_item_while_pending() -> None:
    assert given(CREATED).add_item(Line("B", 1, Decimal("1.50"))) == [ItemAdded(ID, "B", 1, Decimal("1.50"))]


@pytest.mark.parametrize("history", [(CREATED, PAID), (CREATED, PAID, SHIPPED)])
def test_items_change_only_while_pending(history: tuple[object, ...]) -> None:
    order = given(*history)
    with pytest.raises(InvalidTransition, match="cannot add items"):
        order.add_item(Line("B", 1, Decimal(1)))
    with pytest.raises(InvalidTransition, match="cannot remove items"):
        order.remove_item("A")


def test_remove_item_that_is_not_there() -> None:
    with pytest.raises(ItemNotFound):
        given(CREATED).remove_item("nope")
    assert given(CREATED).remove_item("A") == [ItemRemoved(ID, "A")]


def test_an_order_holds_a_bounded_number_of_skus() -> None:
    lines = tuple(Line(f"S{i}", 1, Decimal(1)) for i in range(MAX_LINES))
    with pytest.raises(LimitExceeded, match="at most"):
        given(OrderCreated(ID, "c", "EUR", lines)).add_item(Line("extra", 1, Decimal(1)))


def test_payment_must_equal_the_total_exactly() -> None:
    order = given(CREATED)
    with pytest.raises(InvalidTransition, match=r"must equal the order total 19\.98"):
        order.pay(Decimal("19.97"), "psp")
    assert order.pay(Decimal("19.980"), "psp") == [PaymentProcessed(ID, Decimal("19.980"), "psp")]


def test_an_emptied_order_cannot_be_paid() -> None:
    with pytest.raises(InvalidTransition, match="total is zero"):
        given(CREATED, ItemRemoved(ID, "A")).pay(Decimal(0), "psp")


def test_lifecycle_pending_paid_shipped_delivered() -> None:
    with pytest.raises(InvalidTransition, match="cannot ship an order that is pending"):
        given(CREATED).ship("DHL", "T")
    assert given(CREATED, PAID).ship("DHL", "T-1") == [SHIPPED]
    with pytest.raises(InvalidTransition, match="cannot deliver an order that is paid"):
        given(CREATED, PAID).deliver()
    assert given(CREATED, PAID, SHIPPED).deliver() == [OrderDelivered(ID)]
    with pytest.raises(InvalidTransition, match="cannot pay an order that is delivered"):
        given(CREATED, PAID, SHIPPED, OrderDelivered(ID)).pay(Decimal("19.98"), "again")


def test_cancel_pending_has_no_refund_and_cancel_paid_records_one() -> None:
    assert given(CREATED).cancel("changed mind") == [OrderCancelled(ID, "changed mind", None)]
    assert given(CREATED, PAID).cancel("late") == [OrderCancelled(ID, "late", Decimal("19.98"))]


@pytest.mark.parametrize("history", [(CREATED, PAID, SHIPPED), (CREATED, OrderCancelled(ID, "x", None))])
def test_cannot_cancel_after_shipping_or_twice(history: tuple[object, ...]) -> None:
    with pytest.raises(InvalidTransition, match="cannot cancel"):
        given(*history).cancel("too late")


# --- commands, as the handlers decide them: given events, when command, then events ----------------------------


HELD = (ReservedLine("A", 2),)
SHORT = (ShortLine("A", 2, 1),)
DECISIONS: list[tuple[tuple[Event, ...], OrderCommand, list[Event]]] = [
    ((CREATED,), AddItem(ID, NewLine("B", 2, "1.50")), [ItemAdded(ID, "B", 2, Decimal("1.50"))]),
    ((CREATED,), RemoveItem(ID, "A"), [ItemRemoved(ID, "A")]),
    ((CREATED,), PayOrder(ID, "19.98", "psp-1"), [PAID]),
    ((CREATED, PAID), ShipOrder(ID, "DHL", "T-1"), [SHIPPED]),
    ((CREATED, PAID, SHIPPED), DeliverOrder(ID), [OrderDelivered(ID)]),
    ((CREATED, PAID), CancelOrder(ID, "late"), [OrderCancelled(ID, "late", Decimal("19.98"))]),
    ((CREATED,), RecordReservation(ID, HELD), [StockReserved(ID, HELD)]),
    ((CREATED, PAID), RejectOrder(ID, SHORT), [OrderRejected(ID, "insufficient stock", SHORT, Decimal("19.98"))]),
    ((CREATED,), ExpireOrder(ID), [OrderCancelled(ID, PAYMENT_TIMEOUT, None)]),
]


def test_every_command_type_has_a_case() -> None:
    assert {type(command) for _, command, _ in DECISIONS} == set(get_args(OrderCommand))


@pytest.mark.parametrize(("history", "command", "then"), DECISIONS, ids=[type(c).__name__ for _, c, _ in DECISIONS])
def test_every_command_reaches_its_decision(
    history: tuple[Event, ...], command: OrderCommand, then: list[Event]
) -> None:
    assert decide(given(*history), command) == then


def test_a_command_the_state_refuses_raises_and_decides_nothing() -> None:
    with pytest.raises(InvalidTransition, match="cannot deliver an order that is pending"):
        decide(given(CREATED), DeliverOrder(ID))
    with pytest.raises(InvalidAmount):  # the amount is read in the order's currency: EUR has 2 decimals
        decide(given(CREATED), PayOrder(ID, "19.980", "psp"))


def test_the_status_an_order_reaches_is_the_published_value() -> None:
    statuses = [given(*CREATED_PAID_SHIPPED[:n]).status for n in range(1, 4)]
    assert statuses == [OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.SHIPPED]
    assert [s.value for s in OrderStatus] == ["pending", "paid", "shipped", "delivered", "cancelled", "rejected"]


# --- the fulfilment process manager's decisions ----------------------------------------------------------------


def test_a_reservation_is_recorded_once_and_again_only_when_it_changed() -> None:
    assert given(CREATED).record_reservation(HELD) == [StockReserved(ID, HELD)]
    assert given(CREATED, StockReserved(ID, HELD)).record_reservation(HELD) == []  # a redelivery records nothing
    more = (ReservedLine("A", 2), ReservedLine("B", 3))
    assert given(CREATED, StockReserved(ID, HELD)).record_reservation(more) == [StockReserved(ID, more)]
    assert given(CREATED).reserved is None and given(CREATED, StockReserved(ID, HELD)).reserved == HELD


def test_the_stock_an_order_wants_leaves_out_lines_of_skus_untracked_when_it_was_reserved() -> None:
    assert given(CREATED).stock_wanted() == {"A": 2}  # nothing recorded yet: every line
    reserved_none = given(CREATED, StockReserved(ID, ()), ItemAdded(ID, "B", 1, Decimal("1.00")))
    assert reserved_none.stock_wanted() == {"B": 1}  # A was unlimited for it; B is new
    changed = given(CREATED, StockReserved(ID, ()), ItemAdded(ID, "A", 1, Decimal("9.99")))
    assert changed.stock_wanted() == {"A": 3}  # its line changed: held as the SKU is now
    assert given(CREATED, StockReserved(ID, HELD)).stock_wanted() == {"A": 2}  # held: still wanted


def test_an_unpaid_rejected_order_has_no_refund_and_a_paid_one_is_refunded() -> None:
    assert given(CREATED).reject(SHORT) == [OrderRejected(ID, "insufficient stock", SHORT, None)]
    assert given(CREATED, PAID).reject(SHORT)[0].refund_amount == Decimal("19.98")  # compensation


@pytest.mark.parametrize("history", [(CREATED, PAID, SHIPPED), (CREATED, OrderCancelled(ID, "x", None))])
def test_a_closed_or_shipped_order_is_neither_reserved_nor_rejected(history: tuple[Event, ...]) -> None:
    with pytest.raises(InvalidTransition):
        given(*history).record_reservation(HELD)
    with pytest.raises(InvalidTransition):
        given(*history).reject(SHORT)


def test_a_rejected_order_takes_no_more_commands() -> None:
    rejected = given(CREATED, OrderRejected(ID, "insufficient stock", SHORT, None))
    assert rejected.status is OrderStatus.REJECTED
    for attempt in (lambda: rejected.pay(Decimal("19.98"), "p"), lambda: rejected.cancel("x"), rejected.expire):
        with pytest.raises(InvalidTransition):
            attempt()


@pytest.mark.parametrize(
    "history", [(CREATED, PAID), (CREATED, OrderCancelled(ID, "x", None)), (CREATED, PAID, SHIPPED)]
)
def test_the_payment_deadline_cancels_only_an_unpaid_order(history: tuple[Event, ...]) -> None:
    assert given(CREATED).expire() == [OrderCancelled(ID, "payment timeout", None)]
    with pytest.raises(InvalidTransition, match="cannot expire"):
        given(*history).expire()


@pytest.mark.parametrize(
    ("text", "currency", "ok"),
    [
        ("12.50", "EUR", True),
        ("12.5", "EUR", True),
        ("12.505", "EUR", False),
        ("1000", "JPY", True),
        ("1.5", "JPY", False),
        ("1.234", "KWD", True),
        ("-1", "EUR", False),
        ("1e3", "EUR", False),
        ("01", "EUR", False),
        ("1234567890123", "EUR", False),
        ("NaN", "EUR", False),
        (" 1", "EUR", False),
    ],
)
def test_money_is_parsed_exactly_or_refused(text: str, currency: str, ok: bool) -> None:
    if ok:
        assert parse_amount(text, currency) == Decimal(text)
    else:
        with pytest.raises(InvalidAmount):
            parse_amount(text, currency)


def test_amounts_are_formatted_with_the_currency_minor_units() -> None:
    assert format_amount(Decimal("19.9"), "EUR") == "19.90"
    assert format_amount(Decimal("1000"), "JPY") == "1000"
    assert format_amount(Decimal("1.2"), "KWD") == "1.200"


def test_ship_records_the_service_level_chosen() -> None:
    assert given(CREATED, PAID).ship("UPS", "T-2", "next_day") == [ProductShipped(ID, "UPS", "T-2", "next_day")]


CURRENCIES = ["EUR", "JPY", "KWD", "CLF"]  # 2, 0, 3 and 4 decimal places


def prices(currency: str) -> st.SearchStrategy[Decimal]:
    """Unit prices a client may send in the currency: small ones, and ones near the largest total."""
    whole = st.one_of(st.integers(0, 10**6), st.integers(10**11, 10**12 - 1))
    places = minor_units(currency)
    fraction = st.integers(0, 10**places - 1) if places else st.just(0)
    return st.builds(lambda w, f: Decimal(w) + Decimal(f).scaleb(-places), whole, fraction)


@settings(max_examples=400, deadline=None)
@hypothesis_given(data=st.data())
def test_whatever_can_be_placed_or_added_can_be_paid_and_refunded(data: st.DataObject) -> None:
    """The limits agree: every total the order accepts is an amount a payment (and a refund) can carry."""
    currency = data.draw(st.sampled_from(CURRENCIES))
    line = st.builds(Line, st.sampled_from(["A", "B", "C", "D"]), st.integers(1, 10_000), prices(currency))
    placed, added = data.draw(st.lists(line, min_size=1, max_size=4)), data.draw(st.lists(line, max_size=4))
    try:
        events: list[object] = list(Order.place(ID, "c-1", currency, placed))
    except (LimitExceeded, InvalidTransition):
        return
    for extra in added:
        with contextlib.suppress(LimitExceeded, InvalidTransition):
            events += given(*events).add_item(extra)
    order = given(*events)
    target(float(order.total), label="total")  # push toward the largest totals accepted
    if order.total == 0:
        return
    amount = format_amount(order.total, currency)
    check_decimal_string(amount)  # what PayOrderSchema accepts
    payment = order.pay(parse_amount(amount, currency), "psp")
    refund = given(*events, *payment).cancel("changed my mind")
    assert refund[0].refund_amount == order.total  # type: ignore[union-attr]
