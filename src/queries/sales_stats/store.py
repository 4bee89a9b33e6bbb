"""Reading and writing the sales tables for a batch: one lookup of the orders it did not create, then
one statement per table, each row's increments added to it (upserts in key order: concurrent batches
take their row locks in one order)."""

from __future__ import annotations

from sqlalchemy import Connection, text

from queries.sales_stats.fold import SalesOrder, SalesTotals
from queries.tables import as_json, customer_stats, insert_rows, sales_daily, sales_orders

# Lookups through the primary keys whatever the statistics say (see queries/order_summaries/store.py).
_LOAD = text(
    "SELECT i.id, s.customer_id, s.currency FROM json_array_elements_text(CAST(:ids AS json)) AS i(id)"
    " CROSS JOIN LATERAL (SELECT * FROM sales_orders WHERE order_id = CAST(i.id AS uuid) OFFSET 0) AS s"
)
_INSERT_ORDERS = insert_rows(sales_orders)
_ADD = "{1}.{0} + EXCLUDED.{0}"
_BUMP_DAYS = insert_rows(sales_daily, {c: _ADD.format(c, "sales_daily") for c in ("orders", "revenue", "refunds")})
_BUMP_CUSTOMERS = insert_rows(
    customer_stats,
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


def load(conn: Connection, order_ids: list[str]) -> dict[str, SalesOrder]:
    """The sales_orders rows of these orders that exist, by order id (as given)."""
    if not order_ids:
        return {}
    rows = conn.execute(_LOAD, {"ids": as_json(order_ids)})
    return {row.id: SalesOrder(row.id, row.customer_id, row.currency) for row in rows}


def store(conn: Connection, totals: SalesTotals) -> None:
    """New orders inserted; day and customer increments added, in key order."""
    if totals.new_orders:
        orders = [vars(order) for order in sorted(totals.new_orders, key=lambda order: order.order_id)]
        conn.execute(_INSERT_ORDERS, {"rows": as_json(orders)})
    days = [{"day": day, "currency": currency, **vars(sales)} for (day, currency), sales in sorted(totals.days.items())]
    if days:
        conn.execute(_BUMP_DAYS, {"rows": as_json(days)})
    customers = [
        {"customer_id": customer, "currency": currency, **vars(sales)}
        for (customer, currency), sales in sorted(totals.customers.items())
    ]
    new = [row for row in customers if row["orders"]]  # the customer_stats row exists or is created here
    if new:
        conn.execute(_BUMP_CUSTOMERS, {"rows": as_json(new)})
    known = [row for row in customers if not row["orders"]]  # only payments and refunds: an UPDATE
    if known:
        conn.execute(_UPDATE_CUSTOMERS, {"rows": as_json(known)})
