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

import dataclasses
import logging
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Connection
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import OrderStatus, ReservedLine, ShortLine, is_order_stream
from app.eventlog.projection import Projection
from app.eventlog.store import ConcurrencyError
from app.platform.config import Settings
from commands import stock
from commands.errors import InsufficientStock, InvalidTransition, VersionMismatch
from commands.handlers import OrderCommand, RecordReservation, RejectOrder, handle
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
        for recorded in events:  # stock and customer events pass by: it reacts to orders only
            if is_order_stream(recorded.stream_id):
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


def _retryable(exc: BaseException) -> bool:
    """Another writer appended first or committed between our reads (the order refuses a decision
    taken on what it was a moment ago), or two reactions waited on each other (PostgreSQL broke the
    deadlock by failing ours): decided again, on the state the other left."""
    if isinstance(exc, ConcurrencyError | InvalidTransition | VersionMismatch | psycopg.errors.DeadlockDetected):
        return True
    return isinstance(exc, sqlalchemy.exc.OperationalError) and isinstance(exc.orig, psycopg.errors.DeadlockDetected)


@retry(retry=retry_if_exception(_retryable), wait=wait_random(0, 0.02), stop=stop_after_attempt(20), reraise=True)
def react(conn: Connection, cause: RecordedEvent, settings: Settings) -> None:
    """One order's reaction, in a savepoint (rolled back, and tried again, when it meets another writer)."""
    with conn.begin_nested():
        _react(conn, cause, settings)


def _react(conn: Connection, cause: RecordedEvent, settings: Settings) -> None:
    order_id = cause.stream_id
    before = state.lock(conn, order_id)
    history = eventstore.load(conn, order_id)
    if not history:
        return  # (its events are in the log before they reach a stream)
    order = Order.fold(order_id, (e.domain_event() for e in history))
    step = _Step(conn, order, command_metadata(cause), settings.snapshot_every, before)
    if order.status in OPEN:
        step.hold()
    elif order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        step.release()
    elif before is None or before.state != state.SHIPPED:  # shipped or delivered, and not shipped by us yet
        step.ship()
    due = before.payment_due_at if before else history[0].recorded_at + timedelta(seconds=settings.payment_timeout_s)
    after = Fulfilment(order_id, step.state, step.held, step.short, due, _deadline(order, before), step.version)
    state.save(conn, after, cause.recorded_at)


class _Step:
    """One reaction's work on one order: stock commands, then the order's own command, each with the
    order version it was decided on (If-Match in effect: a stale decision is retried, never applied)."""

    def __init__(self, conn: Connection, order: Order, meta: dict[str, Any], every: int, before: Fulfilment | None):
        self.conn, self.order, self.meta, self.every = conn, order, meta, every
        self.version = order.version
        # every SKU it may hold units of: on the order, recorded as reserved, or on our row
        self.may_hold = (
            {line.sku for line in order.reserved or ()} | set(order.lines) | set(before.reserved if before else ())
        )
        self.state = before.state if before else state.RESERVED
        self.held: dict[str, int] = before.reserved if before else {}
        self.short = before.short if before else None

    def command(self, cmd: OrderCommand) -> None:
        self.version = handle(self.conn, cmd, self.meta, frozenset({self.order.version})).version

    def hold(self) -> None:
        """Pending or paid: hold every tracked line (all or none), or reject the order."""
        wanted = self.order.stock_wanted()
        try:
            holding = stock.hold_order(
                self.conn, self.order.id, wanted, self.may_hold - set(wanted), self.meta, self.every
            )
        except InsufficientStock as exc:
            stock.release_order(self.conn, self.order.id, self.may_hold, self.meta, self.every)
            short = tuple(ShortLine(sku, asked, available) for sku, (asked, available) in sorted(exc.short.items()))
            self.command(RejectOrder(self.order.id, short))
            self.order.status = OrderStatus.REJECTED
            self.state, self.held, self.short = state.REJECTED, {}, [dataclasses.asdict(line) for line in short]
            log.info("order %s rejected: stock short for %s", self.order.id, ", ".join(exc.short))
            return
        lines = tuple(ReservedLine(sku, n) for sku, n in sorted(holding.held.items()))
        if self.order.reserved != lines:
            self.command(RecordReservation(self.order.id, lines))
        self.state, self.held = state.RESERVED, holding.held

    def release(self) -> None:
        """Cancelled or rejected: give back whatever it holds."""
        stock.release_order(self.conn, self.order.id, self.may_hold, self.meta, self.every)
        self.held = {}
        self.state = state.REJECTED if self.order.status is OrderStatus.REJECTED else state.RELEASED

    def ship(self) -> None:
        """Shipped: its current lines leave the stock. Lines it does not hold yet (shipped before we
        met a change, or before any reservation) are taken now as far as stock goes, per SKU; what
        stock could not cover is kept as short on its row, for a person to see."""
        wanted = self.order.stock_wanted()
        others = self.may_hold - set(wanted)
        try:
            stock.hold_order(self.conn, self.order.id, wanted, others, self.meta, self.every)
        except InsufficientStock as exc:
            self.short = _short(exc)
            log.warning(
                "order %s was shipped before its stock was reserved, and stock is short: %s", self.order.id, exc
            )
            covered = {sku: min(n, exc.short[sku][1]) if sku in exc.short else n for sku, n in wanted.items()}
            stock.hold_order(self.conn, self.order.id, covered, others, self.meta, self.every)
        stock.ship_order(self.conn, self.order.id, self.may_hold, self.meta, self.every)
        self.state, self.held = state.SHIPPED, {}


def _short(exc: InsufficientStock) -> list[dict[str, Any]]:
    return [
        {"sku": sku, "requested": asked, "available": available}
        for sku, (asked, available) in sorted(exc.short.items())
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
