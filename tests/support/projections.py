"""Comparing a projection with a rebuild from the event log: an event applied twice (ItemAdded
quantities add up) or lost makes them differ."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from queries.order_summaries import ORDER_SUMMARIES
from tests.support.environments import Env
from tests.support.polling import wait_for
from workers.checkpoints import apply_batch

ROWS = {
    "order_summaries": "SELECT * FROM order_summaries ORDER BY order_id",
    "order_items": "SELECT * FROM order_items ORDER BY order_id, sku",
    "projection_checkpoints": "SELECT * FROM projection_checkpoints WHERE projection = 'order_summaries'"
    " ORDER BY stream_id",
}


def snapshot(env: Env) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(r) for r in env.rows(sql)] for table, sql in ROWS.items()}


def rebuilt(env: Env) -> dict[str, list[dict[str, Any]]]:
    """What order_summaries holds when built from the whole log (the reference the live one must equal)."""
    return rebuilt_rows(env, ORDER_SUMMARIES, ROWS)


def rebuilt_rows(env: Env, projection: Projection, rows: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """What a projection's tables hold (`rows`: a query by table) when built from the whole log in
    position order, as one batch (what a rebuild does); rolled back after."""
    with env.engine.connect() as conn, conn.begin() as tx:
        for table in reversed(projection.tables):  # referencing tables come after the ones they reference
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM projection_checkpoints WHERE projection = :p"), {"p": projection.name})
        events = conn.execute(
            text(
                "SELECT event_id::text, stream_id, version, position, type, schema_version, payload, metadata,"
                " recorded_at FROM events ORDER BY position"
            )
        ).mappings()
        apply_batch(conn, projection, [RecordedEvent(**r) for r in events])
        result = {table: [dict(r) for r in conn.execute(text(sql)).mappings()] for table, sql in rows.items()}
        tx.rollback()
    return result


def converged(env: Env) -> bool:
    """Every order event in the log is reflected in the projection (the sum of versions is a cheap proxy;
    stock streams, `inventory:<SKU>`, have no rows there)."""
    events = env.scalar("SELECT count(*) FROM events WHERE stream_id NOT LIKE '%:%'")
    return bool(env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events)


def reacted_to_all(env: Env, position: int = 2**62) -> bool:
    """The fulfilment process manager has reacted to every order event at or before `position` (its
    row names the order's newest version)."""
    return not env.scalar(
        "SELECT EXISTS (SELECT 1 FROM (SELECT stream_id, max(version) AS v FROM events WHERE position <= :p"
        " AND stream_id NOT LIKE '%:%' GROUP BY stream_id) e"
        " LEFT JOIN fulfilment f ON f.order_id::text = e.stream_id WHERE coalesce(f.order_version, 0) < e.v)",
        p=position,
    )


def assert_exactly_once(env: Env) -> None:
    """Once the projection has caught up with the log, it equals a rebuild: nothing lost, nothing twice."""
    wait_for(lambda: converged(env), timeout=30, what="the projection to reflect every event")
    assert snapshot(env) == rebuilt(env)
