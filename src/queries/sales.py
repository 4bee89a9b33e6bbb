"""The sales_stats read model: orders, revenue and refunds per day and currency, and per customer.

Added after the fact to show what an event log buys: its projector started with empty tables and a
new consumer group, caught up on the whole history from the event store, then followed live events,
with no change to the command side. Days are UTC days of the event's recorded time.

As for order_summaries, the per-event handlers are the reference and `apply_batch` folds a whole
batch into per-day and per-customer increments written with one statement per table. A customer's
first and last order times are the least and greatest of its orders' times, so they do not depend
on the order in which a batch (or a rebuild's batches) meets the customer's orders.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import Connection, text

from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import OrderCancelled, OrderCreated, PaymentProcessed
from app.eventlog.money import format_amount
from app.eventlog.projection import Projection
from queries import tables
from queries.tables import as_json, insert_rows, sales_daily, sales_orders

_DAY = "(CAST(:at AS timestamptz) AT TIME ZONE 'UTC')::date"


def _order(conn: Connection, order_id: str) -> Any:
    return conn.execute(
        text("SELECT customer_id, currency FROM sales_orders WHERE order_id = :id"), {"id": order_id}
    ).one()


def _bump_day(conn: Connection, recorded: RecordedEvent, currency: str, column: str, amount: object) -> None:
    conn.execute(
        text(
            f"INSERT INTO sales_daily (day, currency, {column}) VALUES ({_DAY}, :currency, :amount)"
            f" ON CONFLICT (day, currency) DO UPDATE SET {column} = sales_daily.{column} + EXCLUDED.{column}"
        ),
        {"at": recorded.recorded_at, "currency": currency, "amount": amount},
    )


def on_created(conn: Connection, recorded: RecordedEvent, e: OrderCreated) -> None:
    conn.execute(
        text("INSERT INTO sales_orders (order_id, customer_id, currency) VALUES (:id, :customer, :currency)"),
        {"id": e.order_id, "customer": e.customer_id, "currency": e.currency},
    )
    _bump_day(conn, recorded, e.currency, "orders", 1)
    conn.execute(
        text(
            "INSERT INTO customer_stats (customer_id, currency, orders, first_order_at, last_order_at)"
            " VALUES (:customer, :currency, 1, :at, :at) ON CONFLICT (customer_id, currency) DO UPDATE"
            " SET orders = customer_stats.orders + 1, first_order_at = least(customer_stats.first_order_at, :at),"
            " last_order_at = greatest(customer_stats.last_order_at, :at)"
        ),
        {"customer": e.customer_id, "currency": e.currency, "at": recorded.recorded_at},
    )


def on_paid(conn: Connection, recorded: RecordedEvent, e: PaymentProcessed) -> None:
    order = _order(conn, e.order_id)
    _bump_day(conn, recorded, order.currency, "revenue", e.amount)
    conn.execute(
        text(
            "UPDATE customer_stats SET paid_orders = paid_orders + 1, lifetime_value = lifetime_value + :amount"
            " WHERE customer_id = :customer AND currency = :currency"
        ),
        {"amount": e.amount, "customer": order.customer_id, "currency": order.currency},
    )


def on_cancelled(conn: Connection, recorded: RecordedEvent, e: OrderCancelled) -> None:
    if e.refund_amount is None:
        return
    order = _order(conn, e.order_id)
    _bump_day(conn, recorded, order.currency, "refunds", e.refund_amount)
    conn.execute(
        text(
            "UPDATE customer_stats SET lifetime_value = lifetime_value - :amount"
            " WHERE customer_id = :customer AND currency = :currency"
        ),
        {"amount": e.refund_amount, "customer": order.customer_id, "currency": order.currency},
    )


# The same rules, folded in memory over a batch.


class SalesBatch:
    """A batch's effect on the sales tables: new orders, and increments per day and per customer."""

    def __init__(self, known: dict[str, tuple[str, str]]) -> None:
        self.known = known  # order id -> (customer, currency): sales_orders rows, stored or new
        self.new_orders: list[dict[str, Any]] = []
        self.days: dict[tuple[date, str], list[Any]] = {}  # orders, revenue, refunds
        self.customers: dict[tuple[str, str], list[Any]] = {}  # orders, paid, value, first, last

    def order(self, order_id: str) -> tuple[str, str]:
        if order_id not in self.known:
            raise LookupError(f"sales_orders has no order {order_id}")
        return self.known[order_id]

    def bump_day(self, recorded: RecordedEvent, currency: str, column: int, amount: Any) -> None:
        day = self.days.setdefault((recorded.recorded_at.astimezone(UTC).date(), currency), [0, Decimal(0), Decimal(0)])
        day[column] += amount

    def bump_customer(self, key: tuple[str, str], orders: int, paid: int, value: Decimal, at: Any = None) -> None:
        stats = self.customers.setdefault(key, [0, 0, Decimal(0), at, at])
        stats[0], stats[1], stats[2] = stats[0] + orders, stats[1] + paid, stats[2] + value
        if at is not None:
            stats[3] = at if stats[3] is None else min(stats[3], at)
            stats[4] = at if stats[4] is None else max(stats[4], at)


def fold_created(batch: SalesBatch, recorded: RecordedEvent, e: OrderCreated) -> None:
    if e.order_id in batch.known:
        raise LookupError(f"sales_orders already holds {e.order_id}")
    batch.known[e.order_id] = (e.customer_id, e.currency)
    batch.new_orders.append({"order_id": e.order_id, "customer_id": e.customer_id, "currency": e.currency})
    batch.bump_day(recorded, e.currency, 0, 1)
    batch.bump_customer((e.customer_id, e.currency), 1, 0, Decimal(0), recorded.recorded_at)


def fold_paid(batch: SalesBatch, recorded: RecordedEvent, e: PaymentProcessed) -> None:
    customer, currency = batch.order(e.order_id)
    batch.bump_day(recorded, currency, 1, e.amount)
    batch.bump_customer((customer, currency), 0, 1, e.amount)


def fold_cancelled(batch: SalesBatch, recorded: RecordedEvent, e: OrderCancelled) -> None:
    if e.refund_amount is None:
        return
    customer, currency = batch.order(e.order_id)
    batch.bump_day(recorded, currency, 2, e.refund_amount)
    batch.bump_customer((customer, currency), 0, 0, -e.refund_amount)


FOLDS: dict[type, Any] = {OrderCreated: fold_created, PaymentProcessed: fold_paid, OrderCancelled: fold_cancelled}

# Lookups through the primary keys whatever the statistics say (see queries/projector.py).
_LOAD = text(
    "SELECT i.id, s.customer_id, s.currency FROM json_array_elements_text(CAST(:ids AS json)) AS i(id)"
    " CROSS JOIN LATERAL (SELECT * FROM sales_orders WHERE order_id = CAST(i.id AS uuid) OFFSET 0) AS s"
)
_INSERT_ORDERS = insert_rows(sales_orders)
_ADD = "{1}.{0} + EXCLUDED.{0}"
_BUMP_DAYS = insert_rows(sales_daily, {c: _ADD.format(c, "sales_daily") for c in ("orders", "revenue", "refunds")})
_BUMP_CUSTOMERS = insert_rows(
    tables.customer_stats,
    {
        **{c: _ADD.format(c, "customer_stats") for c in ("orders", "paid_orders", "lifetime_value")},
        "first_order_at": "least(customer_stats.first_order_at, EXCLUDED.first_order_at)",
        "last_order_at": "greatest(customer_stats.last_order_at, EXCLUDED.last_order_at)",
    },
)
_UPDATE_CUSTOMERS = text(
    "UPDATE customer_stats c SET paid_orders = c.paid_orders + u.paid_orders,"
    " lifetime_value = c.lifetime_value + u.lifetime_value"
    " FROM json_populate_recordset(NULL::customer_stats, CAST(:rows AS json)) AS u"
    " WHERE c.customer_id = u.customer_id AND c.currency = u.currency AND c.customer_id = ANY(ARRAY("
    "SELECT customer_id FROM json_populate_recordset(NULL::customer_stats, CAST(:rows AS json))))"
)


def apply_batch(conn: Connection, events: Sequence[RecordedEvent], new_orders: Collection[str] = ()) -> None:
    """Apply events (in per-order version order) with one statement per table; `new_orders` (none of
    whose events this projection applied before) are not looked for in sales_orders."""
    decoded = [(recorded, recorded.domain_event()) for recorded in events]
    ids = sorted({e.order_id for _recorded, e in decoded if type(e) in FOLDS and e.order_id not in new_orders})
    known = {row.id: (row.customer_id, row.currency) for row in conn.execute(_LOAD, {"ids": as_json(ids)})}
    batch = SalesBatch(known)
    with localcontext(prec=1000):
        for recorded, event in decoded:
            fold = FOLDS.get(type(event))
            if fold is not None:
                fold(batch, recorded, event)
    store(conn, batch)


def store(conn: Connection, batch: SalesBatch) -> None:
    """New orders inserted; day and customer increments added, in key order (the order locks are taken)."""
    if batch.new_orders:
        conn.execute(_INSERT_ORDERS, {"rows": as_json(sorted(batch.new_orders, key=lambda o: o["order_id"]))})
    days = [
        {"day": day, "currency": currency, "orders": n, "revenue": revenue, "refunds": refunds}
        for (day, currency), (n, revenue, refunds) in sorted(batch.days.items())
    ]
    if days:
        conn.execute(_BUMP_DAYS, {"rows": as_json(days)})
    customers = [
        {"customer_id": c, "currency": cur, "orders": n, "paid_orders": paid, "lifetime_value": value,
         "first_order_at": first, "last_order_at": last}
        for (c, cur), (n, paid, value, first, last) in sorted(batch.customers.items())
    ]  # fmt: skip
    new = [row for row in customers if row["orders"]]  # the customer_stats row exists or is created here
    if new:
        conn.execute(_BUMP_CUSTOMERS, {"rows": as_json(new)})
    known = [row for row in customers if not row["orders"]]  # only payments and refunds: an UPDATE
    if known:
        conn.execute(_UPDATE_CUSTOMERS, {"rows": as_json(known)})


SALES_STATS = Projection(
    name="sales_stats",
    handlers={OrderCreated: on_created, PaymentProcessed: on_paid, OrderCancelled: on_cancelled},
    tables=("sales_orders", "sales_daily", "customer_stats"),
    batch_handler=apply_batch,
)


def daily_sales(conn: Connection, start: date, end: date, currency: str | None) -> list[dict[str, Any]]:
    """Per day and currency between start and end (inclusive)."""
    rows = conn.execute(
        text(
            "SELECT day, currency, orders, revenue, refunds FROM sales_daily WHERE day BETWEEN :start AND :end"
            + (" AND currency = :currency" if currency else "")
            + " ORDER BY day, currency"
        ),
        {"start": start, "end": end, "currency": currency},
    )
    return [
        {
            "day": r.day,
            "currency": r.currency,
            "orders": r.orders,
            "revenue": format_amount(r.revenue, r.currency),
            "refunds": format_amount(r.refunds, r.currency),
            "net": format_amount(r.revenue - r.refunds, r.currency),
        }
        for r in rows
    ]


def customer_stats(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """A customer's order counts and lifetime value (payments less refunds), per currency."""
    rows = conn.execute(
        text("SELECT * FROM customer_stats WHERE customer_id = :c ORDER BY currency"), {"c": customer_id}
    )
    return [
        {
            "currency": r.currency,
            "orders": r.orders,
            "paid_orders": r.paid_orders,
            "lifetime_value": format_amount(r.lifetime_value, r.currency),
            "first_order_at": r.first_order_at,
            "last_order_at": r.last_order_at,
        }
        for r in rows
    ]
