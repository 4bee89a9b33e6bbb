"""The fulfilment process manager: keeps each order's stock in line with the order, through commands.

It is a consumer group like the projections (workers/consumer.py runs it), so each order event
reaches it at least once, in version order, and its checkpoints move in the transaction of its
reaction: a redelivered or replayed event is a duplicate and does nothing. Its reaction is
level-triggered: for the newest event of each order in a batch, it loads the order as it is now and
brings the stock and the order's fulfilment in line with it, so a reaction repeated, or one that
finds the order moved on, does the right thing and no more:
- pending or paid: reserve every tracked line (commands/stock.py: all or none, across SKU streams),
  release SKUs removed from the order, and record StockReserved on the order; stock short: release
  what it held and record OrderRejected (refunded if paid: the compensation). Its payment deadline
  is set from the order's creation (ORDERSTREAM_PAYMENT_TIMEOUT_S) and met by its payment.
- cancelled or rejected: release what it holds; shipped or delivered: its units leave stock (an
  order shipped before it met it is reserved first, as far as stock goes, then shipped).
Each reaction runs in a savepoint with the row of `fulfilment` locked; one that meets a concurrent
writer (a customer paying as it records, another process manager) is rolled back and tried again on
the state that writer left. Commands go through the handlers the HTTP API uses (commands/handlers.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import OrderStatus, ReservedLine, ShortLine, is_inventory_stream
from app.eventlog.projection import Projection
from app.eventlog.store import ConcurrencyError
from app.platform.config import Settings
from commands import stock
from commands.errors import InsufficientStock, InvalidTransition
from commands.handlers import RecordReservation, RejectOrder, handle
from commands.order import Order
from workers.fulfilment import state
from workers.fulfilment.state import Fulfilment

log = logging.getLogger(__name__)

GROUP = "fulfilment"  # its consumer group, and the actor of the commands it issues
OPEN = (OrderStatus.PENDING, OrderStatus.PAID)
REACTIONS_PER_BATCH = 32  # events per transaction


def process_manager(settings: Settings) -> Projection:
    """The process manager as the consumer-group runner sees it (its own group, its own table)."""

    def apply(conn: Connection, events: Sequence[RecordedEvent], new_streams: Collection[str] = ()) -> None:
        newest: dict[str, RecordedEvent] = {}
        for recorded in events:  # stock events pass by: it issues them, it does not react to them
            if not is_inventory_stream(recorded.stream_id):
                newest[recorded.stream_id] = recorded
        for order_id in sorted(newest):  # rows are locked in one order by every batch
            react(conn, newest[order_id], settings)

    # Its transaction holds the orders' new events until it commits, and a customer's command on one
    # of those orders waits for it: a batch of a few dozen reactions, not of hundreds.
    return Projection(name=GROUP, tables=("fulfilment",), apply=apply, max_batch=REACTIONS_PER_BATCH)


def command_metadata(cause: RecordedEvent | None) -> dict[str, Any]:
    """The metadata of what it appends: the actor is the process manager, the cause its event."""
    meta = cause.metadata if cause is not None else {}
    return {
        "request_id": None,
        "correlation_id": meta.get("correlation_id"),
        "causation_id": cause.event_id if cause is not None else None,
        "actor": GROUP,
    }


@retry(
    # another writer appended first, or committed between our reads (the order refuses a decision
    # taken on what it was a moment ago): decided again on the state it left
    retry=retry_if_exception_type((ConcurrencyError, InvalidTransition)),
    wait=wait_random(0, 0.02),
    stop=stop_after_attempt(20),
    reraise=True,
)
def react(conn: Connection, cause: RecordedEvent, settings: Settings) -> None:
    """One order's reaction, in a savepoint (a concurrent writer: rolled back and tried again)."""
    with conn.begin_nested():
        _react(conn, cause, settings)


def _react(conn: Connection, cause: RecordedEvent, settings: Settings) -> None:
    order_id, every = cause.stream_id, settings.snapshot_every
    before = state.lock(conn, order_id)
    history = eventstore.load(conn, order_id)
    if not history:
        return  # (its events are in the log before they reach a stream)
    order = Order.fold(order_id, (e.domain_event() for e in history))
    meta = command_metadata(cause)
    recorded_lines = {line.sku: line.quantity for line in order.reserved or ()}
    may_hold = set(recorded_lines) | set(order.lines) | set(before.reserved if before else ())
    short = before.short if before else None
    version = order.version
    if order.status in OPEN:
        wanted = {sku: line.quantity for sku, line in order.lines.items()}
        try:
            held = stock.hold_order(conn, order_id, wanted, may_hold - set(wanted), meta, every).held
            lines = tuple(ReservedLine(sku, n) for sku, n in sorted(held.items()))
            if order.reserved != lines:
                version = handle(conn, RecordReservation(order_id, lines), meta).version
            fulfilment_state = state.RESERVED
        except InsufficientStock as exc:
            stock.release_order(conn, order_id, may_hold, meta, every)
            short_lines = tuple(
                ShortLine(sku, asked, available) for sku, (asked, available) in sorted(exc.short.items())
            )
            version = handle(conn, RejectOrder(order_id, short_lines), meta).version
            held, fulfilment_state = {}, state.REJECTED
            short = [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in short_lines]
            order.status = OrderStatus.REJECTED
            log.info("order %s rejected: stock short for %s", order_id, ", ".join(exc.short))
    elif order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        stock.release_order(conn, order_id, may_hold, meta, every)
        held = {}
        fulfilment_state = state.REJECTED if order.status is OrderStatus.REJECTED else state.RELEASED
    else:  # shipped or delivered: what it held leaves the stock
        if order.reserved is None and (before is None or before.state != state.SHIPPED):
            short = _take_for_shipping(conn, order, meta, every)
        stock.ship_order(conn, order_id, may_hold, meta, every)
        held, fulfilment_state = {}, state.SHIPPED
    due = before.payment_due_at if before else history[0].recorded_at + timedelta(seconds=settings.payment_timeout_s)
    after = Fulfilment(order_id, fulfilment_state, held, short, due, _deadline(order, before), version)
    state.save(conn, after, cause.recorded_at)


def _take_for_shipping(conn: Connection, order: Order, meta: dict[str, Any], every: int) -> list[dict[str, Any]] | None:
    """An order shipped before its stock was reserved (the process manager was behind): reserve its
    units now, so that shipping takes them out of stock. Stock short: nothing is taken, and the short
    lines are kept on its row (shipped without stock: the admin API lists it for a person to see)."""
    try:
        stock.hold_order(conn, order.id, {sku: line.quantity for sku, line in order.lines.items()}, (), meta, every)
        return None
    except InsufficientStock as exc:
        log.warning("order %s was shipped before its stock was reserved, and stock is short: %s", order.id, exc)
        return [
            {"sku": sku, "requested": asked, "available": available} for sku, (asked, available) in exc.short.items()
        ]


def _deadline(order: Order, before: Fulfilment | None) -> str:
    """The payment deadline's state as the order now stands (fired stays fired)."""
    if before is not None and before.deadline == state.FIRED:
        return state.FIRED
    if order.status is OrderStatus.PENDING:
        return state.PENDING
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        return state.CANCELLED
    return state.MET
