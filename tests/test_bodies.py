"""Bodies and limits, by class: every command's body judged alike (bodiless ones too), limits
that agree with each other, errors that cannot be amplified, and refusals that never become 500s."""

from __future__ import annotations

import json

import requests
from flask import Flask

from app.entry.factory import create_app
from tests.support import (
    ORDER,
    VALID_BODIES,
    Env,
    api_client,
    events_of,
    our_routes,
    place,
    wait_for,
    web_server,
    workers,
)

# --- 12. bounds that agree --------------------------------------------------------------------------------------

MAX_PRICE = "999999999999.99"


def test_an_order_whose_total_could_not_be_paid_is_refused(app: Flask, env: Env) -> None:
    client = api_client(app)
    line = {"sku": "A", "quantity": 1, "unit_price": MAX_PRICE}
    before = env.scalar("SELECT count(*) FROM events")
    refused = client.post("/orders", json={**ORDER, "items": [line, {**line, "sku": "B"}]})
    assert refused.status_code == 422 and "must stay below 1,000,000,000,000" in refused.json["detail"]
    assert client.post("/orders", json={**ORDER, "items": [{**line, "quantity": 2}]}).status_code == 422
    order_id = place(client, {**ORDER, "items": [line]})
    assert client.post(f"/orders/{order_id}/items", json={**line, "sku": "B", "unit_price": "0.01"}).status_code == 422
    assert env.scalar("SELECT count(*) FROM events") == before + 1


def test_the_largest_order_that_can_be_placed_can_be_paid_refunded_and_reported(fresh_env: Env) -> None:
    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",), ("projector", "--projection", "sales_stats")):
        lines = [{"sku": "A", "quantity": 1, "unit_price": "999999999999.98"},
                 {"sku": "B", "quantity": 1, "unit_price": "0.01"}]  # fmt: skip
        order_id = place(client, {**ORDER, "customer_id": "big-spender", "items": lines})
        paid = client.post(f"/orders/{order_id}/payments", json={"amount": MAX_PRICE, "reference": "r"})
        assert paid.status_code == 200
        assert client.post(f"/orders/{order_id}/cancellation", json={"reason": "refund it"}).status_code == 200
        order = wait_for(lambda: (r := client.get(f"/orders/{order_id}?min_version=3")).status_code == 200 and r.json)
        stats = wait_for(lambda: (r := client.get("/customers/big-spender/stats")).status_code == 200 and r.json)
    assert (order["total"], order["paid_amount"], order["refunded_amount"]) == (MAX_PRICE, MAX_PRICE, MAX_PRICE)
    assert stats["by_currency"][0]["lifetime_value"] == "0.00"
    day = client.get("/stats/sales?currency=EUR").json[-1]
    assert (day["revenue"], day["refunds"], day["net"]) == (MAX_PRICE, MAX_PRICE, "0.00")


# --- 13. commands without a body, and every command's body ------------------------------------------------------


def test_every_command_refuses_unknown_fields_unparseable_json_and_other_media_types(
    app: Flask, env: Env, order_id: str
) -> None:
    client = api_client(app)
    before = env.scalar("SELECT count(*) FROM events")
    commands = [r for r in our_routes(app, order_id) if r.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert len(commands) >= 10
    for route in commands:
        body = {**VALID_BODIES.get(route.endpoint, {}), "unexpected": 1}
        unknown = client.open(route.path, method=route.method, json=body)
        assert unknown.status_code == 422, (route, unknown.status_code, unknown.data[:200])
        assert "unexpected" in json.dumps(unknown.json["errors"]), route
        for text, status in (("{bad", 400), ("[1, 2]", 422), ('"text"', 422), ("null", 422)):
            response = client.open(route.path, method=route.method, data=text, content_type="application/json")
            assert response.status_code == status, (route, text, response.status_code)
        other = client.open(route.path, method=route.method, data="reason=r", content_type="text/plain")
        assert other.status_code == 415, (route, other.status_code)
    assert env.scalar("SELECT count(*) FROM events") == before
    assert client.post(f"/orders/{order_id}/delivery", json={}).status_code == 409  # {} is no body: judged as such


# --- 6. error amplification ----------------------------------------------------------------------------------------


def test_a_body_of_many_elements_is_refused_by_its_size_not_judged_element_by_element(app: Flask) -> None:
    client = api_client(app)
    # what the outside review sent: 48 KB, 16,000 items; then a body of 5,000 unknown members
    for body in ({**ORDER, "items": [{}] * 16_000}, {**ORDER, **{f"k{i}": 1 for i in range(5000)}}):
        response = client.post("/orders", data=json.dumps(body, separators=(",", ":")), content_type="application/json")
        assert response.status_code == 422 and len(response.data) < 1000, len(response.data)
        assert "holds" in json.dumps(response.json["errors"])


def test_field_errors_are_capped(app: Flask) -> None:
    bad_line = {"sku": "", "quantity": 0, "unit_price": "x", "extra": 1}
    response = api_client(app).post("/orders", json={**ORDER, "items": [bad_line] * 100})
    assert response.status_code == 422
    errors = response.json["errors"]
    assert "more errors not shown" in json.dumps(errors["_truncated"])
    messages = sum(len(v) for line in errors["json"]["items"].values() for v in line.values())
    assert messages == 20


# --- 21. an error subclass nobody listed ----------------------------------------------------------------------------


def test_a_subclass_of_any_known_refusal_answers_as_its_parent() -> None:
    from commands.execution import STATUS_OF, status_of

    for known, status in STATUS_OF.items():
        unforeseen = type(f"Unforeseen{known.__name__}", (known,), {})
        assert status_of(unforeseen("new case")) == status, known


def test_every_domain_refusal_has_a_client_error_status() -> None:
    """Every DomainError subclass has a status (through its ancestors): none can become a 500."""
    from commands import errors
    from commands.execution import status_of

    for error in vars(errors).values():
        if isinstance(error, type) and issubclass(error, errors.DomainError) and error is not errors.DomainError:
            assert 400 <= status_of(error("x")) < 500, error


def test_a_bodiless_command_retried_with_its_key_replays_on_any_web_process(env: Env) -> None:
    """The retry of a command without a body (remove an item, deliver) is the same request whichever
    web process takes it: its fingerprint holds nothing of the process (two workers, new connections)."""
    auth = {"Authorization": f"Bearer {env.settings.admin_token}"}
    with web_server(env) as base:
        order = requests.post(f"{base}/orders", json={**ORDER, "items": [ORDER["items"][0], {**ORDER["items"][0],
                              "sku": "B"}]}, headers=auth, timeout=10).json()["order_id"]  # fmt: skip
        for body in ({}, None):
            answers = [
                requests.delete(
                    f"{base}/orders/{order}/items/B",
                    headers={**auth, "Idempotency-Key": f"rm-{body}"},
                    json=body,
                    timeout=10,
                )
                for _ in range(12)
            ]
            assert {a.status_code for a in answers} == {200}, [(a.status_code, a.text[:100]) for a in answers]
            assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 11
            requests.post(f"{base}/orders/{order}/items", json={**ORDER["items"][0], "sku": "B"}, headers=auth,
                          timeout=10)  # put it back for the next round  # fmt: skip
    assert events_of(env, order) == ["OrderCreated", "ItemRemoved", "ItemAdded", "ItemRemoved", "ItemAdded"]
