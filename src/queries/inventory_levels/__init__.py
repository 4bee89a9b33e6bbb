"""The inventory_levels projection: one row per tracked SKU (on hand, reserved, available, version).

A batch is applied like order_summaries': load the rows of the SKUs it touches, fold its stock
events onto them in memory (`fold`), write back what changed (`store`). Order events pass by; the
consumer runner's checkpoints still see them, so its exactly-once rules hold for every stream.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from queries.inventory_levels import store
from queries.inventory_levels.fold import LevelRow, fold_batch, sku_of


def apply(conn: Connection, events: Sequence[RecordedEvent], new_streams: Collection[str] = ()) -> None:
    """Apply events (in per-stream version order); SKUs of `new_streams` have no row to look for."""
    streams = {recorded.stream_id for recorded in events}
    skus = {stream_id: sku for stream_id in streams if (sku := sku_of(stream_id)) is not None}
    if not skus:
        return
    levels = store.load(conn, sorted(sku for stream_id, sku in skus.items() if stream_id not in new_streams))
    levels.update({sku: LevelRow(sku, None) for stream_id, sku in skus.items() if stream_id in new_streams})
    fold_batch(levels, events)
    store.store(conn, list(levels.values()))


INVENTORY_LEVELS = Projection(name="inventory_levels", tables=("inventory_levels",), apply=apply, pipelined=True)
