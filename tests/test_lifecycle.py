"""End to end over HTTP: commands in, relay and projector processes, the query side reaches each state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import ORDER, Env, place, wait_for, workers


@pytest.fixture(scope="module")
def running(env: Env) -> Iterator[None]:
    with workers(env, ("relay",), ("projector",)):
        yield


def seen(client: FlaskClient, order_id: str, version: int) -> dict[str, Any]:
    """Poll GET /orders/{id} until the projection reflects at least `version`."""

    def current() -> dict[str, Any] | None:
        response = client.get(f"/orders/{order_id}")
        return response.json if response.status_code == 200 and response.json["version"] >= version else None

    return wait_for(current, what=f"order {order_id} at version {version}")


def test_order_lifecycle_reaches_the_query_side(client: FlaskClient, running: None) -> None:
    created = client.post("/orders", json=ORDER)
    order_id = created.json["order_id"]
    order = seen(client, order_id, 1)
    assert order["status"] == "pending" and order["total"] == "19.98" and order["currency"] == "EUR"
    assert order["items"] == [{"sku": "A", "quantity": 2, "unit_price": "9.99", "line_total": "19.98"}]
    assert order["created_at"] == order["updated_at"]

    added = client.post(f"/orders/{order_id}/items", json={"sku": "B", "quantity": 3, "unit_price": "0.50"})
    order = seen(client, order_id, added.json["version"])
    assert order["total"] == "21.48" and [i["sku"] for i in order["items"]] == ["A", "B"]

    removed = client.delete(f"/orders/{order_id}/items/A")
    order = seen(client, order_id, removed.json["version"])
    assert order["total"] == "1.50" and [i["sku"] for i in order["items"]] == ["B"]

    paid = client.post(f"/orders/{order_id}/payments", json={"amount": "1.50", "reference": "psp-1"})
    order = seen(client, order_id, paid.json["version"])
    assert (order["status"], order["paid_amount"]) == ("paid", "1.50")

    shipped = client.post(f"/orders/{order_id}/shipments", json={"carrier": "DHL", "tracking_number": "JD01"})
    order = seen(client, order_id, shipped.json["version"])
    assert order["status"] == "shipped"
    assert order["shipment"] == {"carrier": "DHL", "tracking_number": "JD01", "service_level": "standard"}

    delivered = client.post(f"/orders/{order_id}/delivery")
    order = seen(client, order_id, delivered.json["version"])
    assert order["status"] == "delivered" and order["version"] == 6
    assert order["updated_at"] > order["created_at"]


def test_cancelling_a_paid_order_records_the_refund(client: FlaskClient, running: None) -> None:
    order_id = place(client)
    client.post(f"/orders/{order_id}/payments", json={"amount": "19.98", "reference": "psp"})
    cancelled = client.post(f"/orders/{order_id}/cancellation", json={"reason": "damaged"})
    assert cancelled.status_code == 200
    order = seen(client, order_id, cancelled.json["version"])
    assert (order["status"], order["refunded_amount"], order["cancellation_reason"]) == (
        "cancelled",
        "19.98",
        "damaged",
    )


def test_list_filters_paginates_newest_first(client: FlaskClient, running: None) -> None:
    customer = "list-customer"
    ids = [place(client, {**ORDER, "customer_id": customer}) for _ in range(5)]
    paid = ids[1]
    version = client.post(f"/orders/{paid}/payments", json={"amount": "19.98", "reference": "r"}).json["version"]
    seen(client, paid, version)
    for order_id in ids:
        seen(client, order_id, 1)

    page1 = client.get(f"/orders?customer_id={customer}&page=1&page_size=3")
    page2 = client.get(f"/orders?customer_id={customer}&page=2&page_size=3")
    listed = [o["order_id"] for o in page1.json + page2.json]
    assert listed == list(reversed(ids))
    assert '"total": 5' in page1.headers["X-Pagination"]
    only_paid = client.get(f"/orders?customer_id={customer}&status=paid").json
    assert [o["order_id"] for o in only_paid] == [paid]
    assert client.get("/orders?status=lost").status_code == 422
    assert client.get("/orders?page_size=100000").status_code == 422
