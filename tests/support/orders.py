"""Orders to test with: the sample order, placed over HTTP or written straight into the event log."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient

from app.eventlog import store as eventstore
from app.eventlog.events import ItemAdded, ItemRemoved, Line, OrderCreated, PaymentProcessed
from commands.order import Order
from tests.support.environments import Env
from tests.support.polling import wait_for

ORDER = {"customer_id": "c-1", "currency": "EUR", "items": [{"sku": "A", "quantity": 2, "unit_price": "9.99"}]}
META = {"request_id": "r-1", "correlation_id": "c-1", "causation_id": None, "actor": "test"}


def place(client: FlaskClient, body: dict[str, Any] | None = None) -> str:
    """POST /orders (the sample order unless told otherwise); the new order's id."""
    response = client.post("/orders", json=body or ORDER)
    assert response.status_code == 201, response.json
    return str(response.json["order_id"])


def events_of(env: Env, order_id: str) -> list[str]:
    """The types of an order's events, in version order."""
    return [r["type"] for r in env.rows("SELECT type FROM events WHERE stream_id = :s ORDER BY version", s=order_id)]


def created(order_id: str) -> OrderCreated:
    """An OrderCreated of one line (SKU "A", 1 x 1.00 EUR)."""
    return OrderCreated(order_id, "c-1", "EUR", (Line("A", 1, Decimal("1.00")),))


def write_history(env: Env, order_id: str, items: int, pay: bool = False) -> list[Any]:
    """OrderCreated, `items` ItemAdded of SKU "A" (quantities merge), one ItemRemoved, maybe a payment."""
    events: list[Any] = [created(order_id)]
    events += [ItemAdded(order_id, "A" if n % 2 else f"S{n}", 1, Decimal("1.50")) for n in range(items)]
    if items > 1:
        events.append(ItemRemoved(order_id, "S0"))
    recorded = []
    with env.engine.begin() as conn:
        for version, event in enumerate(events):
            recorded += eventstore.append(conn, order_id, version, [event], META)
    if pay:
        order = Order.fold(order_id, events)
        with env.engine.begin() as conn:
            recorded += eventstore.append(
                conn, order_id, order.version, [PaymentProcessed(order_id, order.total, "p")], META
            )
    return recorded


def write_orders(env: Env, count: int, items: int = 3) -> list[str]:
    """`count` orders written straight into the log (write_history); their ids."""
    orders = [str(uuid.uuid4()) for _ in range(count)]
    for order_id in orders:
        write_history(env, order_id, items)
    return orders


def shown(client: Any, order_id: str, version: int) -> dict[str, Any]:
    """The order once the projection shows `version` (polling: a projector process takes a moment to start)."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (r := client.get(f"/orders/{order_id}?min_version={version}")).status_code == 200 and r.json,
        what=f"the projector to show {order_id} at version {version}",
    )
