"""The order_summaries projector: how each event changes the order_summaries and order_items rows.

Handlers run inside the consumer runner's batch transaction, after it has checked that the event is
the next version of its order for this projection, so they apply each event exactly once and in order.
Timestamps come from the events, never from the clock, so a rebuild yields identical rows.

Two forms of the same rules: the per-event handlers (a few statements each), and `apply_batch`, which
loads the rows of every order a batch touches (one SELECT per table), folds the batch onto them in
memory with the `FOLDS` below, and writes them back with one statement per table. The handlers are
the reference (tests compare the two) and the fallback that isolates an event that fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection, text

from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    PaymentProcessed,
    ProductShipped,
)
from app.eventlog.projection import Projection
from app.platform.db import driver
from queries.tables import as_json, insert_rows_sql, order_items, order_summaries, replace_all

_TOUCH = "version = :version, last_position = :position, updated_at = :at"
_TOTAL = "total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = :id)"


def _params(recorded: RecordedEvent, **extra: object) -> dict[str, object]:
    return {
        "id": recorded.stream_id,
        "version": recorded.version,
        "position": recorded.position,
        "at": recorded.recorded_at,
        **extra,
    }


def _update(conn: Connection, recorded: RecordedEvent, assignments: str, **extra: object) -> None:
    conn.execute(
        text(f"UPDATE order_summaries SET {assignments}, {_TOUCH} WHERE order_id = :id"),
        _params(recorded, **extra),
    )


def on_created(conn: Connection, recorded: RecordedEvent, e: OrderCreated) -> None:
    conn.execute(
        text(
            "INSERT INTO order_summaries (order_id, customer_id, currency, status, total, paid_amount,"
            " refunded_amount, version, last_position, created_at, updated_at)"
            " VALUES (:id, :customer, :currency, 'pending', 0, 0, 0, :version, :position, :at, :at)"
        ),
        _params(recorded, customer=e.customer_id, currency=e.currency),
    )
    if e.lines:
        conn.execute(
            text("INSERT INTO order_items (order_id, sku, quantity, unit_price) VALUES (:id, :sku, :qty, :price)"),
            [{"id": recorded.stream_id, "sku": x.sku, "qty": x.quantity, "price": x.unit_price} for x in e.lines],
        )
    _update(conn, recorded, _TOTAL)


def on_item_added(conn: Connection, recorded: RecordedEvent, e: ItemAdded) -> None:
    conn.execute(
        text(
            "INSERT INTO order_items (order_id, sku, quantity, unit_price) VALUES (:id, :sku, :qty, :price)"
            " ON CONFLICT (order_id, sku) DO UPDATE SET quantity = order_items.quantity + EXCLUDED.quantity,"
            " unit_price = EXCLUDED.unit_price"
        ),
        {"id": recorded.stream_id, "sku": e.sku, "qty": e.quantity, "price": e.unit_price},
    )
    _update(conn, recorded, _TOTAL)


def on_item_removed(conn: Connection, recorded: RecordedEvent, e: ItemRemoved) -> None:
    conn.execute(text("DELETE FROM order_items WHERE order_id = :id AND sku = :sku"), _params(recorded, sku=e.sku))
    _update(conn, recorded, _TOTAL)


def on_paid(conn: Connection, recorded: RecordedEvent, e: PaymentProcessed) -> None:
    _update(conn, recorded, "status = 'paid', paid_amount = :amount", amount=e.amount)


def on_shipped(conn: Connection, recorded: RecordedEvent, e: ProductShipped) -> None:
    _update(
        conn,
        recorded,
        "status = 'shipped', carrier = :c, tracking_number = :t, service_level = :level",
        c=e.carrier,
        t=e.tracking_number,
        level=e.service_level,
    )


def on_delivered(conn: Connection, recorded: RecordedEvent, e: OrderDelivered) -> None:
    _update(conn, recorded, "status = 'delivered'")


def on_cancelled(conn: Connection, recorded: RecordedEvent, e: OrderCancelled) -> None:
    _update(
        conn,
        recorded,
        "status = 'cancelled', cancellation_reason = :reason, refunded_amount = :refund",
        reason=e.reason,
        refund=e.refund_amount or 0,
    )


# The same rules, folded in memory over a batch.


class RowConflict(Exception):
    """The batch would insert a row that exists (the per-event handlers fail on the primary key)."""


@dataclass
class OrderRows:
    """One order's rows while a batch is folded onto them: its summary (None if it has no row) and
    its items by SKU, (quantity, unit price)."""

    order_id: str
    summary: dict[str, Any] | None
    items: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    stored_summary: bool = False  # it had a summary row before the batch
    stored_items: bool = False  # it had item rows before the batch
    summary_changed: bool = False
    items_changed: bool = False
    recount: bool = False  # the total is due: the sum over the items as they are at the end of the batch

    def touch(self, recorded: RecordedEvent, recount: bool = False, **changes: Any) -> None:
        """What `_update` does: nothing without a summary row, else set the columns and the event's
        stamp. With `recount`, what _TOTAL does; the items only change after this while the summary
        exists, each time with a recount, so summing them once at the end gives the same total."""
        if self.summary is None:
            return
        self.summary.update(changes, version=recorded.version, last_position=recorded.position)
        self.summary["updated_at"] = recorded.recorded_at
        self.summary_changed = True
        self.recount = self.recount or recount

    def total(self) -> Decimal:
        return sum((quantity * price for quantity, price in self.items.values()), Decimal(0))


def fold_created(order: OrderRows, recorded: RecordedEvent, e: OrderCreated) -> None:
    if order.summary is not None:
        raise RowConflict(f"order_summaries already holds {order.order_id}")
    order.summary = {
        "order_id": order.order_id, "customer_id": e.customer_id, "currency": e.currency, "status": "pending",
        "total": Decimal(0), "paid_amount": Decimal(0), "refunded_amount": Decimal(0), "carrier": None,
        "tracking_number": None, "service_level": None, "cancellation_reason": None,
        "created_at": recorded.recorded_at,
    }  # fmt: skip
    for line in e.lines:
        if line.sku in order.items:
            raise RowConflict(f"order_items already holds {order.order_id} {line.sku}")
        order.items[line.sku] = (line.quantity, line.unit_price)
        order.items_changed = True
    order.touch(recorded, recount=True)


def fold_item_added(order: OrderRows, recorded: RecordedEvent, e: ItemAdded) -> None:
    quantity = order.items[e.sku][0] + e.quantity if e.sku in order.items else e.quantity
    order.items[e.sku] = (quantity, e.unit_price)
    order.items_changed = True
    order.touch(recorded, recount=True)


def fold_item_removed(order: OrderRows, recorded: RecordedEvent, e: ItemRemoved) -> None:
    if order.items.pop(e.sku, None) is not None:
        order.items_changed = True
    order.touch(recorded, recount=True)


def fold_paid(order: OrderRows, recorded: RecordedEvent, e: PaymentProcessed) -> None:
    order.touch(recorded, status="paid", paid_amount=e.amount)


def fold_shipped(order: OrderRows, recorded: RecordedEvent, e: ProductShipped) -> None:
    order.touch(
        recorded, status="shipped", carrier=e.carrier, tracking_number=e.tracking_number, service_level=e.service_level
    )


def fold_delivered(order: OrderRows, recorded: RecordedEvent, e: OrderDelivered) -> None:
    order.touch(recorded, status="delivered")


def fold_cancelled(order: OrderRows, recorded: RecordedEvent, e: OrderCancelled) -> None:
    refund = e.refund_amount or Decimal(0)
    order.touch(recorded, status="cancelled", cancellation_reason=e.reason, refunded_amount=refund)


FOLDS: dict[type, Any] = {
    OrderCreated: fold_created,
    ItemAdded: fold_item_added,
    ItemRemoved: fold_item_removed,
    PaymentProcessed: fold_paid,
    ProductShipped: fold_shipped,
    OrderDelivered: fold_delivered,
    OrderCancelled: fold_cancelled,
}

_SUMMARY_COLUMNS = ", ".join(c.name for c in order_summaries.columns if c.name != "order_id")
# Rows are looked up through the primary keys with `= ANY(ARRAY(...))`, which the planner serves from
# the index whatever its statistics say: tables fresh from a rebuild have none yet, and a join against
# the JSON ids was planned as a sequential scan of order_items per batch (a million-event rebuild then
# slowed down as it went). They come back keyed by PostgreSQL's text of the uuid.
_ANY_ID = "order_id = ANY(ARRAY(SELECT CAST(json_array_elements_text(CAST(%(ids)s AS json)) AS uuid)))"
_LOAD_SUMMARIES = f"SELECT order_id::text, {_SUMMARY_COLUMNS} FROM order_summaries WHERE {_ANY_ID}"
_LOAD_ITEMS = f"SELECT order_id::text, sku, quantity, unit_price FROM order_items WHERE {_ANY_ID}"
_INSERT_SUMMARIES = insert_rows_sql(order_summaries)
_UPSERT_SUMMARIES = insert_rows_sql(order_summaries, on_conflict=replace_all(order_summaries))
_DELETE_ITEMS = f"DELETE FROM order_items WHERE {_ANY_ID}"
_INSERT_ITEMS = insert_rows_sql(order_items)


def apply_batch(conn: Connection, events: Sequence[RecordedEvent], new_orders: Collection[str] = ()) -> None:
    """Apply events (in per-order version order) with one SELECT and one write per table; the rows
    of `new_orders` (none of whose events this projection applied before) are not looked for."""
    decoded = [(recorded, recorded.domain_event()) for recorded in events]
    touched = sorted({recorded.stream_id for recorded, event in decoded if type(event) in FOLDS})
    orders = {order_id: OrderRows(order_id, None) for order_id in touched}
    orders.update(load(conn, [order_id for order_id in touched if order_id not in new_orders]))
    with localcontext(prec=1000):  # NUMERIC is exact: so are the sums here
        for recorded, event in decoded:
            fold = FOLDS.get(type(event))
            if fold is not None:
                fold(orders[recorded.stream_id], recorded, event)
        for order in orders.values():
            if order.recount and order.summary is not None:
                order.summary["total"] = order.total()
    store(conn, list(orders.values()))


def load(conn: Connection, order_ids: list[str]) -> dict[str, OrderRows]:
    """The current rows of these orders (an order without rows gets an empty OrderRows)."""
    orders = {order_id: OrderRows(order_id, None) for order_id in order_ids}
    if not order_ids:
        return orders
    ids = {"ids": as_json(order_ids)}
    stream_of = {str(uuid.UUID(order_id)): order_id for order_id in order_ids}  # PostgreSQL's text -> ours
    pg = driver(conn)
    # Both are sent before either is read: in a pipelined transaction, one round trip for the two.
    summaries = pg.cursor(row_factory=dict_row).execute(_LOAD_SUMMARIES, ids)
    items = pg.execute(_LOAD_ITEMS, ids)
    for row in summaries.fetchall():
        order = orders[stream_of[row["order_id"]]]
        order.summary, order.stored_summary = {**row, "order_id": order.order_id}, True
    for order_id, sku, quantity, unit_price in items.fetchall():
        order = orders[stream_of[order_id]]
        order.items[sku] = (quantity, unit_price)
        order.stored_items = True
    return orders


def store(conn: Connection, orders: list[OrderRows]) -> None:
    """Write back what the fold changed: new summaries inserted (a plain INSERT: cheaper, and it fails
    like the per-event handler on a row that exists), stored ones replaced, changed orders' items
    replaced. No result is read: in a pipelined transaction, they all travel with its COMMIT."""
    pg = driver(conn)
    for stored, statement in ((False, _INSERT_SUMMARIES), (True, _UPSERT_SUMMARIES)):
        summaries = [
            order.summary
            for order in orders
            if order.summary is not None and order.summary_changed and order.stored_summary is stored
        ]
        if summaries:
            pg.execute(statement, {"rows": as_json(summaries)})
    changed = [order for order in orders if order.items_changed]
    stale = [order.order_id for order in changed if order.stored_items]
    if stale:
        pg.execute(_DELETE_ITEMS, {"ids": as_json(stale)})
    items = [
        {"order_id": order.order_id, "sku": sku, "quantity": quantity, "unit_price": price}
        for order in changed
        for sku, (quantity, price) in order.items.items()
    ]
    if items:
        pg.execute(_INSERT_ITEMS, {"rows": as_json(items)})


ORDER_SUMMARIES = Projection(
    name="order_summaries",
    handlers={
        OrderCreated: on_created,
        ItemAdded: on_item_added,
        ItemRemoved: on_item_removed,
        PaymentProcessed: on_paid,
        ProductShipped: on_shipped,
        OrderDelivered: on_delivered,
        OrderCancelled: on_cancelled,
    },
    tables=("order_summaries", "order_items"),
    batch_handler=apply_batch,
    pipelined=True,
)
