"""The sales_stats read model: orders, revenue and refunds per day and currency, and per customer.

Added after the fact to show what an event log buys: its projector started with empty tables and a
new consumer group, caught up on the whole history from the event store, then followed live events,
with no change to the command side. Days are UTC days of the event's recorded time.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, text

from app.events import OrderCancelled, OrderCreated, PaymentProcessed, RecordedEvent
from app.money import format_amount
from app.projection import Projection

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
            " SET orders = customer_stats.orders + 1, last_order_at = :at"
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


SALES_STATS = Projection(
    name="sales_stats",
    handlers={OrderCreated: on_created, PaymentProcessed: on_paid, OrderCancelled: on_cancelled},
    tables=("sales_orders", "sales_daily", "customer_stats"),
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
