"""Projection tables of the order_summaries read model (created by migrations, not here)."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Numeric, String, Table, Text
from sqlalchemy.dialects.postgresql import UUID

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
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", UUID(as_uuid=False), primary_key=True),
    Column("sku", Text, primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric, nullable=False),
)
