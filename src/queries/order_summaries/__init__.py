"""The order_summaries projection: one row per order (status, total, amounts, shipment) and its items.

A batch is applied in three steps: load the rows of every order it touches (`store.load`), fold its
events onto them in memory (`fold`, the rules, written once), write back what changed (`store.store`).
It runs inside the consumer runner's batch transaction, after the checkpoints have dropped duplicates
and filled gaps, so each event is applied exactly once and in its order's version order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import is_order_stream
from app.eventlog.projection import Projection
from queries.order_summaries import store
from queries.order_summaries.fold import OrderRows, fold_batch


def apply(conn: Connection, events: Sequence[RecordedEvent], new_orders: Collection[str] = ()) -> None:
    """Apply events (in per-order version order); the rows of `new_orders` (none of whose events this
    projection applied before) are not looked for. Stock streams (`inventory:<SKU>`) have no rows here."""
    events = [recorded for recorded in events if is_order_stream(recorded.stream_id)]
    touched = sorted({recorded.stream_id for recorded in events})  # sorted: rows are locked in one order
    orders = {order_id: OrderRows(order_id, None) for order_id in touched}
    orders.update(store.load(conn, [order_id for order_id in touched if order_id not in new_orders]))
    fold_batch(orders, events)
    store.store(conn, list(orders.values()))


ORDER_SUMMARIES = Projection(
    name="order_summaries", tables=("order_summaries", "order_items"), apply=apply, pipelined=True
)
