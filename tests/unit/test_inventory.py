"""The Sku aggregate, given/when/then over events, and snapshots that never change an answer: pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog.events import (
    DomainEvent,
    OrderCreated,
    StockAdjusted,
    StockReceived,
    UnitsReleased,
    UnitsReserved,
    UnitsShipped,
)
from commands.errors import BelowReserved, InsufficientStock, InvalidTransition, SkuNotFound
from commands.inventory import Sku


def stock(*history: DomainEvent) -> Sku:
    return Sku.fold("A", history)


RECEIVED = StockReceived("A", 10, "delivery-1")


def test_a_sku_is_tracked_from_its_first_receipt() -> None:
    assert not stock().tracked
    assert stock().receive(10, "delivery-1") == [RECEIVED]
    after = stock(RECEIVED)
    assert (after.tracked, after.on_hand, after.reserved, after.available, after.version) == (True, 10, 0, 10, 1)


def test_an_untracked_sku_is_unlimited_and_cannot_be_adjusted() -> None:
    assert stock().reserve("o-1", 10**9) == []
    with pytest.raises(SkuNotFound):
        stock().adjust(-1, "stocktake")


def test_reserving_sets_units_aside_and_is_idempotent_per_order() -> None:
    given = stock(RECEIVED)
    assert given.reserve("o-1", 3) == [UnitsReserved("A", "o-1", 3)]
    then = stock(RECEIVED, UnitsReserved("A", "o-1", 3))
    assert (then.on_hand, then.reserved, then.available) == (10, 3, 7)
    assert then.reserve("o-1", 3) == []  # a redelivered reservation reserves once
    assert then.reserve("o-1", 2) == [UnitsReleased("A", "o-1", 1)]  # its line was lowered: the rest goes back
    lowered = stock(RECEIVED, UnitsReserved("A", "o-1", 3), UnitsReleased("A", "o-1", 1))
    assert (lowered.reserved, lowered.reservations) == (2, {"o-1": 2})
    assert then.reserve("o-1", 5) == [UnitsReserved("A", "o-1", 2)]  # more units on the order: the difference
    topped = stock(RECEIVED, UnitsReserved("A", "o-1", 3), UnitsReserved("A", "o-1", 2))
    assert (topped.reserved, topped.available, topped.reservations) == (5, 5, {"o-1": 5})
    assert topped.release("o-1") == [UnitsReleased("A", "o-1", 5)]  # gives back all it holds


def test_a_shortage_names_what_is_short() -> None:
    given = stock(RECEIVED, UnitsReserved("A", "o-1", 8))
    with pytest.raises(InsufficientStock) as refused:
        given.reserve("o-2", 3)
    assert refused.value.short == {"A": (3, 2)}
    assert "A (asked 3, available 2)" in str(refused.value)
    assert given.reserve("o-2", 2) == [UnitsReserved("A", "o-2", 2)]  # exactly what is available


def test_releasing_gives_back_exactly_what_the_order_reserved() -> None:
    given = stock(RECEIVED, UnitsReserved("A", "o-1", 4), UnitsReserved("A", "o-2", 1))
    assert given.release("o-1") == [UnitsReleased("A", "o-1", 4)]
    assert given.release("o-3") == []  # it reserved nothing: nothing to release
    then = stock(RECEIVED, UnitsReserved("A", "o-1", 4), UnitsReserved("A", "o-2", 1), UnitsReleased("A", "o-1", 4))
    assert (then.on_hand, then.reserved, then.available) == (10, 1, 9)
    assert then.release("o-1") == []  # released once


def test_shipping_takes_the_reserved_units_out_of_stock() -> None:
    given = stock(RECEIVED, UnitsReserved("A", "o-1", 4))
    assert given.ship("o-1") == [UnitsShipped("A", "o-1", 4)]
    assert given.ship("o-2") == []
    then = stock(RECEIVED, UnitsReserved("A", "o-1", 4), UnitsShipped("A", "o-1", 4))
    assert (then.on_hand, then.reserved, then.available) == (6, 0, 6)


def test_an_adjustment_never_takes_on_hand_below_reserved() -> None:
    given = stock(RECEIVED, UnitsReserved("A", "o-1", 4))
    assert given.adjust(-6, "stocktake") == [StockAdjusted("A", -6, "stocktake")]
    with pytest.raises(BelowReserved):
        given.adjust(-7, "stocktake")
    with pytest.raises(InvalidTransition):
        given.adjust(0, "nothing")
    assert stock(RECEIVED, StockAdjusted("A", 5, "found")).on_hand == 15


def test_an_order_event_is_not_a_sku_event() -> None:
    with pytest.raises(TypeError):
        stock(OrderCreated("o-1", "c", "EUR", ()))


# Any run of commands, decided by the aggregate itself, gives a valid log.
COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), st.integers(1, 20)),
        st.tuples(st.just("adjust"), st.integers(-20, 20)),
        st.tuples(st.just("reserve"), st.sampled_from(["o-1", "o-2", "o-3", "o-4"]), st.integers(1, 10)),
        st.tuples(st.just("release"), st.sampled_from(["o-1", "o-2", "o-3", "o-4"])),
        st.tuples(st.just("ship"), st.sampled_from(["o-1", "o-2", "o-3", "o-4"])),
    ),
    max_size=80,
)


def run(commands: list[tuple[object, ...]]) -> list[DomainEvent]:
    current, log = Sku("A"), []
    for command in commands:
        name, *args = command
        try:
            events = getattr(current, str(name))(*args, *(["why"] if name in ("receive", "adjust") else []))
        except (InvalidTransition, InsufficientStock, SkuNotFound):
            continue
        for event in events:
            current.apply(event)
        log += events
    return log


@settings(max_examples=300, deadline=None)
@given(commands=COMMANDS, every=st.integers(1, 30))
def test_a_snapshot_and_the_events_after_it_give_the_state_of_a_full_fold(commands: list[tuple[object, ...]],
                                                                          every: int) -> None:  # fmt: skip
    log = run(commands)
    full = Sku.fold("A", log)
    taken = len(log) // every * every  # the newest snapshot: at the last multiple of `every`
    stored = json.loads(json.dumps(Sku.fold("A", log[:taken]).snapshot()))  # as the jsonb column keeps it
    resumed = Sku.fold("A", log[taken:], Sku.from_snapshot("A", taken, stored))
    assert resumed == full
    assert (resumed.on_hand, resumed.reserved, resumed.version) == (full.on_hand, full.reserved, len(log))
    assert full.reserved <= full.on_hand  # and the rules hold whatever the run: never oversold
