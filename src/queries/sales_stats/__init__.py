"""The sales_stats projection: orders, revenue and refunds per day and currency, and per customer.

Added after the fact to show what an event log buys: its projector started with empty tables and a
new consumer group, caught up on the whole history from the event store, then followed live events,
with no change to the command side. A batch is folded in memory (`fold`, the rules, written once),
then the orders it did not create are looked up (`store.load`) to roll the sums up by customer and
currency, and the increments are added with one statement per table (`store.store`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from queries.sales_stats import store
from queries.sales_stats.fold import fold_batch, totals


def apply(conn: Connection, events: Sequence[RecordedEvent], new_orders: Collection[str] = ()) -> None:
    """Apply events (in per-order version order); `new_orders` (none of whose events this projection
    applied before) are not looked for in sales_orders."""
    orders = fold_batch(events)
    stored = store.load(conn, sorted(order_id for order_id in orders if order_id not in new_orders))
    store.store(conn, totals(orders, stored))


SALES_STATS = Projection(name="sales_stats", tables=("sales_orders", "sales_daily", "customer_stats"), apply=apply)
