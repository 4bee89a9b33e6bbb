"""The command API over HTTP (Flask test client, real PostgreSQL): contract, refusals, concurrency."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import ORDER, Env, api_client, events_of, place


def test_place_order_answers_201_with_location_version_position_and_etag(client: FlaskClient, env: Env) -> None:
    response = client.post("/orders", json=ORDER, headers={"X-Request-ID": "req-123"})
    assert response.status_code == 201
    body = response.json
    assert set(body) == {"order_id", "version", "position"} and body["version"] == 1
    assert response.headers["Location"] == f"/orders/{body['order_id']}"
    assert response.headers["ETag"] == '"1"'
    assert response.headers["X-Request-ID"] == "req-123"
    stored = env.rows("SELECT position, payload, metadata FROM events WHERE stream_id = :s", s=body["order_id"])
    assert stored[0]["position"] == body["position"]
    assert stored[0]["payload"]["lines"] == [{"sku": "A", "quantity": 2, "unit_price": "9.99"}]
    assert stored[0]["metadata"]["request_id"] == "req-123"
    assert stored[0]["metadata"]["correlation_id"] == "req-123"


def test_a_request_id_is_generated_when_absent_and_echoed_on_errors(client: FlaskClient) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert response.headers["X-Request-ID"] == response.json["request_id"]
    assert len(response.headers["X-Request-ID"]) == 36


BAD_ORDERS = [
    ({**ORDER, "unexpected": 1}, "unexpected"),
    ({**ORDER, "currency": "XYZ"}, "currency"),
    ({**ORDER, "currency": "eur"}, "currency"),
    ({**ORDER, "items": []}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 1, "unit_price": 9.99}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 1, "unit_price": "1e3"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 1, "unit_price": "-1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 10**30, "unit_price": "1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 1.5, "unit_price": "1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": "2", "unit_price": "1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 0, "unit_price": "1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "", "quantity": 1, "unit_price": "1.00"}]}, "items"),
    ({**ORDER, "items": [{"sku": "A", "quantity": 1, "unit_price": "9" * 40}]}, "items"),
    ({**ORDER, "customer_id": ""}, "customer_id"),
    ({"currency": "EUR", "items": ORDER["items"]}, "customer_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_ORDERS)
def test_invalid_orders_get_422_naming_the_field_and_append_nothing(
    client: FlaskClient, env: Env, body: dict[str, Any], field: str
) -> None:
    before = env.scalar("SELECT count(*) FROM events")
    response = client.post("/orders", json=body)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"]["json"]
    assert env.scalar("SELECT count(*) FROM events") == before


def test_more_decimals_than_the_currency_has_is_422(client: FlaskClient, env: Env) -> None:
    before = env.scalar("SELECT count(*) FROM events")
    response = client.post("/orders", json={**ORDER, "currency": "JPY"})
    assert response.status_code == 422
    assert "JPY allows 0 decimal places" in response.json["detail"]
    assert env.scalar("SELECT count(*) FROM events") == before


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('{"customer_id": "c"', "application/json", 400),
        ("customer_id=c", "application/x-www-form-urlencoded", 415),
        ("<order/>", "text/xml", 415),
        ("[1, 2]", "application/json", 422),
        ("null", "application/json", 422),
        ('"just a string"', "application/json", 422),
        ("\xff\xfe", "application/json", 400),
    ],
)
def test_malformed_bodies_and_wrong_content_types_are_4xx_problems(
    client: FlaskClient, data: str, content_type: str, status: int
) -> None:
    response = client.post("/orders", data=data, content_type=content_type)
    assert response.status_code == status, response.data
    assert response.content_type == "application/problem+json"
    assert response.json["detail"]


def test_an_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/orders", data="x" * (65 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"


def test_unknown_order_is_404_and_bad_id_is_404(client: FlaskClient) -> None:
    for path in (f"/orders/{uuid.uuid4()}/payments", "/orders/not-a-uuid/payments"):
        response = client.post(path, json={"amount": "1.00", "reference": "r"})
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"


def test_wrong_method_is_405_problem_with_allow(client: FlaskClient) -> None:
    response = client.put("/orders", json=ORDER)
    assert response.status_code == 405
    assert response.content_type == "application/problem+json"
    assert "POST" in response.headers["Allow"]


def test_invalid_transitions_are_409_and_append_nothing(client: FlaskClient, env: Env) -> None:
    order_id = place(client)
    cases = [
        (
            f"/orders/{order_id}/shipments",
            {"carrier": "DHL", "tracking_number": "T"},
            "cannot ship an order that is pending",
        ),
        (f"/orders/{order_id}/delivery", None, "cannot deliver"),
        (f"/orders/{order_id}/payments", {"amount": "1.00", "reference": "r"}, "must equal the order total 19.98"),
    ]
    for path, body, detail in cases:
        response = client.post(path, json=body)
        assert response.status_code == 409, response.json
        assert detail in response.json["detail"]
    assert client.delete(f"/orders/{order_id}/items/NOPE").status_code == 404
    assert events_of(env, order_id) == ["OrderCreated"]


def test_if_match_makes_a_command_conditional(client: FlaskClient, env: Env) -> None:
    order_id = place(client)
    added = client.post(
        f"/orders/{order_id}/items", json={"sku": "B", "quantity": 1, "unit_price": "0.02"}, headers={"If-Match": '"1"'}
    )
    assert added.status_code == 200 and added.headers["ETag"] == '"2"'
    stale = client.post(
        f"/orders/{order_id}/payments", json={"amount": "20.00", "reference": "r"}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert "at version 2, not 1" in stale.json["detail"]
    garbage = client.post(f"/orders/{order_id}/delivery", headers={"If-Match": '"abc"'})
    assert garbage.status_code == 412
    paid = client.post(
        f"/orders/{order_id}/payments",
        json={"amount": "20.00", "reference": "r"},
        headers={"If-Match": added.headers["ETag"]},
    )
    assert paid.status_code == 200 and paid.json["version"] == 3
    assert events_of(env, order_id) == ["OrderCreated", "ItemAdded", "PaymentProcessed"]


@pytest.mark.parametrize("conditional", [False, True])
def test_concurrent_commands_on_one_order_exactly_one_wins(app: Flask, env: Env, conditional: bool) -> None:
    order_id = place(api_client(app))
    racers = 8
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def pay() -> None:
        client = api_client(app)
        barrier.wait()
        headers = {"If-Match": '"1"'} if conditional else {}
        response = client.post(
            f"/orders/{order_id}/payments", json={"amount": "19.98", "reference": "r"}, headers=headers
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=pay) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1, statuses
    assert all(s in (409, 412) for s in statuses if s != 200), statuses
    assert events_of(env, order_id) == ["OrderCreated", "PaymentProcessed"]


def test_openapi_documents_every_command_and_query(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    operations = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert operations >= {
        ("/orders", "post"),
        ("/orders", "get"),
        ("/orders/{order_id}", "get"),
        ("/orders/{order_id}/items", "post"),
        ("/orders/{order_id}/items/{sku}", "delete"),
        ("/orders/{order_id}/payments", "post"),
        ("/orders/{order_id}/shipments", "post"),
        ("/orders/{order_id}/delivery", "post"),
        ("/orders/{order_id}/cancellation", "post"),
    }
    assert set(spec["x-event-catalogue"]) >= {"OrderCreated", "PaymentProcessed", "OrderCancelled"}


def test_swagger_ui_is_served_from_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs").get_data(as_text=True)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page
    assert "://" not in page.split("<body>")[0].replace("http://www.w3.org", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert client.get(f"/static/swagger-ui/{asset}").status_code == 200
