"""Reading and writing the inventory_levels rows a batch touches: one SELECT and one upsert.

Statements go to psycopg itself and only the SELECT's result is read, so a batch can run as a
pipelined transaction (the upsert travels with its COMMIT).
"""

from __future__ import annotations

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.platform.db import driver
from queries.inventory_levels.fold import LevelRow
from queries.tables import as_json, insert_rows_sql, inventory_levels, replace_all

_COLUMNS = ", ".join(c.name for c in inventory_levels.columns)
_LOAD = (
    f"SELECT {_COLUMNS} FROM inventory_levels"
    " WHERE sku = ANY(ARRAY(SELECT json_array_elements_text(CAST(%(skus)s AS json))))"
)
_UPSERT = insert_rows_sql(inventory_levels, on_conflict=replace_all(inventory_levels))


def load(conn: Connection, skus: list[str]) -> dict[str, LevelRow]:
    """The current rows of these SKUs (a SKU without a row gets an empty LevelRow)."""
    levels = {sku: LevelRow(sku, None) for sku in skus}
    if skus:
        for row in driver(conn).cursor(row_factory=dict_row).execute(_LOAD, {"skus": as_json(skus)}).fetchall():
            levels[row["sku"]] = LevelRow(row["sku"], row, stored=True)
    return levels


def store(conn: Connection, levels: list[LevelRow]) -> None:
    """Write back the rows the fold changed, in SKU order (concurrent batches lock rows in one order)."""
    rows = sorted((level.row for level in levels if level.changed and level.row is not None), key=lambda r: r["sku"])
    if rows:
        driver(conn).execute(_UPSERT, {"rows": as_json(rows)})
