"""Queries over the order_summaries projection (projection tables only; plain SQL on the hot path)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection, Row, func, select

from app.eventlog.money import format_amount
from app.platform.db import driver
from queries.tables import order_summaries


def _summary(row: Row[Any]) -> dict[str, Any]:
    data = dict(row._mapping)
    for name in ("total", "paid_amount", "refunded_amount"):
        data[name] = format_amount(data[name], row.currency)
    return data


def list_orders(
    conn: Connection, status: str | None, customer_id: str | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of orders, newest first, and how many match in all."""
    where = []
    if status:
        where.append(order_summaries.c.status == status)
    if customer_id:
        where.append(order_summaries.c.customer_id == customer_id)
    page = (
        select(order_summaries)
        .where(*where)
        .order_by(order_summaries.c.created_at.desc(), order_summaries.c.order_id)
        .offset(min(offset, 2**62))  # an absurd page number is an empty page, not an overflow
        .limit(limit)
    )
    total = conn.execute(select(func.count()).select_from(order_summaries).where(*where)).scalar_one()
    return [_summary(row) for row in conn.execute(page)], total


# One statement, one round trip: the fields OrderSchema shows, with the items as JSON (prices as
# text: exact) and the shipment's fields for the nested object.
_ORDER = """
    SELECT s.order_id::text AS order_id, s.customer_id, s.status, s.currency, s.total, s.paid_amount,
           s.refunded_amount, s.version, s.created_at, s.updated_at, s.cancellation_reason,
           s.carrier, s.tracking_number, s.service_level, s.personal,
           f.state AS f_state, f.reserved AS f_reserved, f.short AS f_short, f.payment_due_at AS f_due,
           f.deadline AS f_deadline, f.order_version AS f_version,
           (SELECT coalesce(json_agg(json_build_array(i.sku, i.quantity, i.unit_price::text) ORDER BY i.sku), '[]')
            FROM order_items i WHERE i.order_id = s.order_id) AS items
    FROM order_summaries s LEFT JOIN fulfilment f ON f.order_id = s.order_id WHERE s.order_id = %(id)s
"""
_AMOUNTS = ("total", "paid_amount", "refunded_amount")


def get_order(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """One order as GET /orders/{id} shows it (exactly OrderSchema's fields, ready to encode as
    JSON), or None if the projection has not seen it."""
    with driver(conn).cursor(row_factory=dict_row) as cur:
        order = cur.execute(_ORDER, {"id": order_id}).fetchone()
    if order is None:
        return None
    currency = order["currency"]
    for name in _AMOUNTS:
        order[name] = format_amount(order[name], currency)
    order["items"] = [
        {
            "sku": sku,
            "quantity": quantity,
            "unit_price": format_amount(Decimal(price), currency),
            "line_total": format_amount(Decimal(price) * quantity, currency),
        }
        for sku, quantity, price in order["items"]
    ]
    shipment = {name: order.pop(name) for name in ("carrier", "tracking_number", "service_level")}
    order["shipment"] = shipment if shipment["carrier"] is not None else None
    order["fulfilment"] = fulfilment_of({name[2:]: order.pop(name) for name in _FULFILMENT})
    return order


_FULFILMENT = ("f_state", "f_reserved", "f_short", "f_due", "f_deadline", "f_version")


def fulfilment_of(row: dict[str, Any]) -> dict[str, Any]:
    """The `fulfilment` field from the process manager's row (state None: it has not reacted yet).
    Its `version` is the order version it last reacted to."""
    return {
        "state": row["state"] or "reserving",
        "reserved": row["reserved"] or [],
        "short": row["short"],
        "payment_due_at": row["due"],
        "deadline": row["deadline"],
        "version": row["version"],
    }


def personal_data_of(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's orders that carry personal data (sealed), newest first."""
    with driver(conn).cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT order_id::text AS order_id, created_at, personal FROM order_summaries"
            " WHERE customer_id = %s AND personal IS NOT NULL ORDER BY created_at DESC, order_id",
            (customer_id,),
        ).fetchall()
