"""Projection tables of the read models (created by migrations, not here), and the set-based writes
the projectors make to them: one statement for any number of rows, bound as one JSON document."""

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Date, DateTime, Integer, MetaData, Numeric, String, Table, Text, TextClause
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

order_summaries = Table(
    "order_summaries",
    metadata,
    Column("order_id", UUID(as_uuid=False), primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", Text, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("paid_amount", Numeric, nullable=False),
    Column("refunded_amount", Numeric, nullable=False),
    Column("carrier", Text),
    Column("tracking_number", Text),
    Column("service_level", Text),
    Column("cancellation_reason", Text),
    Column("version", Integer, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("personal", JSONB),  # sealed: {subject, key_id, ciphertext}
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", UUID(as_uuid=False), primary_key=True),
    Column("sku", Text, primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric, nullable=False),
)

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("order_id", UUID(as_uuid=False), primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("currency", String(3), nullable=False),
)

sales_daily = Table(
    "sales_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("orders", Integer, nullable=False),
    Column("revenue", Numeric, nullable=False),
    Column("refunds", Numeric, nullable=False),
)

customer_stats = Table(
    "customer_stats",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("orders", Integer, nullable=False),
    Column("paid_orders", Integer, nullable=False),
    Column("lifetime_value", Numeric, nullable=False),
    Column("first_order_at", DateTime(timezone=True)),
    Column("last_order_at", DateTime(timezone=True)),
)

inventory_levels = Table(
    "inventory_levels",
    metadata,
    Column("sku", Text, primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


fulfilment = Table(
    "fulfilment",
    metadata,
    Column("order_id", UUID(as_uuid=False), primary_key=True),
    Column("state", Text, nullable=False),
    Column("reserved", JSONB, nullable=False),
    Column("short", JSONB),
    Column("payment_due_at", DateTime(timezone=True)),
    Column("deadline", Text),
    Column("order_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def insert_rows(table: Table, on_conflict: Mapping[str, str] | None = None) -> TextClause:
    """INSERT of every row given as one JSON document (`as_json`); with `on_conflict`, an upsert on the
    primary key setting each named column to its SQL expression (EXCLUDED is the new row).

    JSON rather than one array per column: psycopg adapts lists element by element in Python, which
    cost more than everything else in a batch; orjson encodes it fast, and PostgreSQL parses it quickly.
    """
    return sql_text(insert_rows_sql(table, on_conflict, rows=":rows"))


def insert_rows_sql(table: Table, on_conflict: Mapping[str, str] | None = None, rows: str = "%(rows)s") -> str:
    """insert_rows as SQL for psycopg itself (parameter `%(rows)s`), for statements sent straight to it."""
    names = ", ".join(c.name for c in table.columns)
    sql = (
        f"INSERT INTO {table.name} ({names}) SELECT {names}"
        f" FROM json_populate_recordset(NULL::{table.name}, CAST({rows} AS json))"
    )
    if on_conflict is not None:
        keys = ", ".join(c.name for c in table.primary_key.columns)
        updates = ", ".join(f"{column} = {expression}" for column, expression in on_conflict.items())
        sql += f" ON CONFLICT ({keys}) DO UPDATE SET {updates}"
    return sql


def replace_all(table: Table) -> dict[str, str]:
    """The on_conflict of an upsert that replaces every column but the key with the new row's."""
    keys = {c.name for c in table.primary_key.columns}
    return {c.name: f"EXCLUDED.{c.name}" for c in table.columns if c.name not in keys}


def as_json(rows: Sequence[Mapping[str, Any]] | Sequence[str] | Mapping[str, Any]) -> str:
    """Rows (or ids) as one JSON parameter: exact decimals and timestamps as their text forms.

    Upserts get their rows sorted by key, so that concurrent batches lock shared rows in one order."""
    return orjson.dumps(rows, default=str).decode()
