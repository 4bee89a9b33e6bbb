"""Reading the sales_stats read model (written by queries/sales_stats/): sales per day and currency,
and a customer's order counts and lifetime value."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, text

from app.eventlog.money import format_amount


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
