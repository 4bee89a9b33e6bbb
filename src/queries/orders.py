"""Queries over the order_summaries projection (plain SQLAlchemy Core; projection tables only)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select

from app.money import format_amount
from queries.tables import order_items, order_summaries


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


def get_order(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """One order with its items, or None if the projection has not seen it."""
    row = conn.execute(select(order_summaries).where(order_summaries.c.order_id == order_id)).first()
    if row is None:
        return None
    items = conn.execute(
        select(order_items).where(order_items.c.order_id == order_id).order_by(order_items.c.sku)
    ).all()
    order = _summary(row)
    order["items"] = [
        {
            "sku": item.sku,
            "quantity": item.quantity,
            "unit_price": format_amount(item.unit_price, row.currency),
            "line_total": format_amount(item.unit_price * item.quantity, row.currency),
        }
        for item in items
    ]
    order["shipment"] = (
        {"carrier": row.carrier, "tracking_number": row.tracking_number, "service_level": row.service_level}
        if row.carrier is not None
        else None
    )
    return order


class NotYetProjected(Exception):
    """The projection has not reached the version the client asked for within the wait."""

    def __init__(self, wanted: int, projected: int) -> None:
        super().__init__(f"the order is projected up to version {projected}, not yet {wanted}")
        self.wanted, self.projected = wanted, projected


def get_order_at_least(engine: Engine, order_id: str, min_version: int | None, wait_ms: int) -> dict[str, Any] | None:
    """The order once the projection has at least `min_version` of it, polling for up to wait_ms."""
    deadline, delay = time.monotonic() + wait_ms / 1000, 0.002
    while True:
        with engine.connect() as conn:
            order = get_order(conn, order_id)
        if min_version is None or (order is not None and order["version"] >= min_version):
            return order
        if time.monotonic() + delay > deadline:
            raise NotYetProjected(min_version, order["version"] if order else 0)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
