"""Queries over the inventory_levels projection (projection tables only)."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection, func, select

from app.platform.db import driver
from queries.tables import inventory_levels

_LEVEL = "SELECT sku, on_hand, reserved, available, version FROM inventory_levels WHERE sku = %(sku)s"
_SHOWN = (
    inventory_levels.c.sku,
    inventory_levels.c.on_hand,
    inventory_levels.c.reserved,
    inventory_levels.c.available,
    inventory_levels.c.version,
)


def get_level(conn: Connection, sku: str) -> dict[str, Any] | None:
    """One SKU as GET /inventory/{sku} shows it, or None if the projection has not seen it (untracked)."""
    with driver(conn).cursor(row_factory=dict_row) as cur:
        return cur.execute(_LEVEL, {"sku": sku}).fetchone()


def list_levels(
    conn: Connection, available_below: int | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of SKUs in SKU order (those with fewer than `available_below` available, if given),
    and how many match in all."""
    where = [] if available_below is None else [inventory_levels.c.available < available_below]
    page = (
        select(*_SHOWN)
        .where(*where)
        .order_by(inventory_levels.c.sku)
        .offset(min(offset, 2**62))  # an absurd page number is an empty page, not an overflow
        .limit(limit)
    )
    total = conn.execute(select(func.count()).select_from(inventory_levels).where(*where)).scalar_one()
    return [dict(row._mapping) for row in conn.execute(page)], total
