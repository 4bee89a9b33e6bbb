"""Reading and writing the order_summaries and order_items rows a batch touches: one SELECT and one
write per table for the whole batch.

Every statement goes to psycopg itself and no result is read but the two SELECTs', so a batch runs
as a pipelined transaction: the writes travel with its COMMIT.
"""

from __future__ import annotations

import uuid

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.platform.db import driver
from queries.order_summaries.fold import OrderRows
from queries.tables import as_json, insert_rows_sql, order_items, order_summaries, replace_all

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
    on a row that exists), stored ones replaced, changed orders' items replaced. No result is read:
    in a pipelined transaction, they all travel with its COMMIT."""
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
