"""The order_summaries projector: how each event changes the order_summaries and order_items rows.

Handlers run inside the consumer runner's batch transaction, after it has checked that the event is
the next version of its order for this projection, so they apply each event exactly once and in order.
Timestamps come from the events, never from the clock, so a rebuild yields identical rows.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from app.events import (
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    PaymentProcessed,
    ProductShipped,
    RecordedEvent,
)
from app.projection import Projection

_TOUCH = "version = :version, last_position = :position, updated_at = :at"
_TOTAL = "total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = :id)"


def _params(recorded: RecordedEvent, **extra: object) -> dict[str, object]:
    return {
        "id": recorded.stream_id,
        "version": recorded.version,
        "position": recorded.position,
        "at": recorded.recorded_at,
        **extra,
    }


def _update(conn: Connection, recorded: RecordedEvent, assignments: str, **extra: object) -> None:
    conn.execute(
        text(f"UPDATE order_summaries SET {assignments}, {_TOUCH} WHERE order_id = :id"),
        _params(recorded, **extra),
    )


def on_created(conn: Connection, recorded: RecordedEvent, e: OrderCreated) -> None:
    conn.execute(
        text(
            "INSERT INTO order_summaries (order_id, customer_id, currency, status, total, paid_amount,"
            " refunded_amount, version, last_position, created_at, updated_at)"
            " VALUES (:id, :customer, :currency, 'pending', 0, 0, 0, :version, :position, :at, :at)"
        ),
        _params(recorded, customer=e.customer_id, currency=e.currency),
    )
    if e.lines:
        conn.execute(
            text("INSERT INTO order_items (order_id, sku, quantity, unit_price) VALUES (:id, :sku, :qty, :price)"),
            [{"id": recorded.stream_id, "sku": x.sku, "qty": x.quantity, "price": x.unit_price} for x in e.lines],
        )
    _update(conn, recorded, _TOTAL)


def on_item_added(conn: Connection, recorded: RecordedEvent, e: ItemAdded) -> None:
    conn.execute(
        text(
            "INSERT INTO order_items (order_id, sku, quantity, unit_price) VALUES (:id, :sku, :qty, :price)"
            " ON CONFLICT (order_id, sku) DO UPDATE SET quantity = order_items.quantity + EXCLUDED.quantity,"
            " unit_price = EXCLUDED.unit_price"
        ),
        {"id": recorded.stream_id, "sku": e.sku, "qty": e.quantity, "price": e.unit_price},
    )
    _update(conn, recorded, _TOTAL)


def on_item_removed(conn: Connection, recorded: RecordedEvent, e: ItemRemoved) -> None:
    conn.execute(text("DELETE FROM order_items WHERE order_id = :id AND sku = :sku"), _params(recorded, sku=e.sku))
    _update(conn, recorded, _TOTAL)


def on_paid(conn: Connection, recorded: RecordedEvent, e: PaymentProcessed) -> None:
    _update(conn, recorded, "status = 'paid', paid_amount = :amount", amount=e.amount)


def on_shipped(conn: Connection, recorded: RecordedEvent, e: ProductShipped) -> None:
    _update(
        conn,
        recorded,
        "status = 'shipped', carrier = :c, tracking_number = :t, service_level = :level",
        c=e.carrier,
        t=e.tracking_number,
        level=e.service_level,
    )


def on_delivered(conn: Connection, recorded: RecordedEvent, e: OrderDelivered) -> None:
    _update(conn, recorded, "status = 'delivered'")


def on_cancelled(conn: Connection, recorded: RecordedEvent, e: OrderCancelled) -> None:
    _update(
        conn,
        recorded,
        "status = 'cancelled', cancellation_reason = :reason, refunded_amount = :refund",
        reason=e.reason,
        refund=e.refund_amount or 0,
    )


ORDER_SUMMARIES = Projection(
    name="order_summaries",
    handlers={
        OrderCreated: on_created,
        ItemAdded: on_item_added,
        ItemRemoved: on_item_removed,
        PaymentProcessed: on_paid,
        ProductShipped: on_shipped,
        OrderDelivered: on_delivered,
        OrderCancelled: on_cancelled,
    },
    tables=("order_summaries", "order_items"),
)
