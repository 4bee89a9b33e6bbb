"""Audit feed, per-order history and time travel over the event log; schema evolution."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from flask.testing import FlaskClient
from sqlalchemy import text

from app.eventlog.catalogue import catalogue_markdown
from app.eventlog.events import SCHEMA_VERSIONS
from tests.support import ORDER, Env, place


def lifecycle(client: FlaskClient) -> tuple[str, list[dict[str, object]]]:
    """An order taken through five commands; returns its id and each command's answer."""
    order_id = place(client)
    answers = [
        client.post(f"/orders/{order_id}/items", json={"sku": "B", "quantity": 1, "unit_price": "0.02"}),
        client.post(f"/orders/{order_id}/payments", json={"amount": "20.00", "reference": "psp"}),
        client.post(f"/orders/{order_id}/shipments", json={"carrier": "DHL", "tracking_number": "T"}),
        client.post(f"/orders/{order_id}/delivery"),
    ]
    assert all(a.status_code == 200 for a in answers)
    return order_id, [a.json for a in answers]


def test_the_feed_pages_through_the_log_in_position_order(client: FlaskClient) -> None:
    for _ in range(3):
        lifecycle(client)
    seen, url = [], "/events?limit=4"
    while True:
        page = client.get(url)
        assert page.status_code == 200
        if not page.json["events"]:
            break
        seen += page.json["events"]
        assert page.headers["Link"] == f'<{page.json["next"]}>; rel="next"'
        url = page.json["next"]
    positions = [e["position"] for e in seen]
    assert positions == sorted(positions) and len(positions) == len(set(positions)) >= 15
    assert int(parse_qs(urlparse(url).query)["after"][0]) == positions[-1]  # the cursor waits at the end

    paid = client.get("/events?type=PaymentProcessed&limit=1000").json["events"]
    assert paid and {e["type"] for e in paid} == {"PaymentProcessed"}
    assert client.get("/events?limit=0").status_code == 422
    assert client.get("/events?type=NoSuchEvent").status_code == 422


def test_an_orders_events_carry_their_metadata(client: FlaskClient) -> None:
    order_id = client.post("/orders", json=ORDER, headers={"X-Request-ID": "audit-1"}).json["order_id"]
    client.post(f"/orders/{order_id}/cancellation", json={"reason": "r"}, headers={"X-Request-ID": "audit-2"})
    events = client.get(f"/orders/{order_id}/events").json
    assert [(e["version"], e["type"]) for e in events] == [(1, "OrderCreated"), (2, "OrderCancelled")]
    assert [e["metadata"]["request_id"] for e in events] == ["audit-1", "audit-2"]
    assert all(e["metadata"]["actor"] and e["recorded_at"] for e in events)
    assert [e["schema_version"] for e in events] == [SCHEMA_VERSIONS["OrderCreated"], 1]
    assert client.get(f"/orders/{uuid.uuid4()}/events").status_code == 404


def test_history_folds_the_order_as_it_was_by_version_and_by_time(client: FlaskClient, env: Env) -> None:
    order_id, answers = lifecycle(client)
    times = {r["version"]: r["recorded_at"] for r in env.rows(
        "SELECT version, recorded_at FROM events WHERE stream_id = :s", s=order_id)}  # fmt: skip

    at_2 = client.get(f"/orders/{order_id}/history?version=2").json
    assert (at_2["version"], at_2["status"], at_2["total"]) == (2, "pending", "20.00")
    assert [i["sku"] for i in at_2["items"]] == ["A", "B"]
    paid_at = times[3].isoformat()
    at_time = client.get(f"/orders/{order_id}/history", query_string={"at": paid_at}).json
    assert (at_time["version"], at_time["status"], at_time["paid_amount"]) == (3, "paid", "20.00")
    now = client.get(f"/orders/{order_id}/history").json
    assert (now["version"], now["status"]) == (answers[-1]["version"], "delivered")

    before = times[1].replace(year=times[1].year - 1).isoformat()
    assert client.get(f"/orders/{order_id}/history", query_string={"at": before}).status_code == 404
    assert client.get(f"/orders/{order_id}/history?version=99").status_code == 404
    assert client.get(f"/orders/{order_id}/history?at=yesterday").status_code == 422
    assert client.get(f"/orders/{order_id}/history?at=2026-01-01T00:00:00").status_code == 422  # no offset
    both = client.get(f"/orders/{order_id}/history", query_string={"at": paid_at, "version": 1})
    assert both.status_code == 422


def test_a_log_with_both_versions_of_product_shipped_folds_and_projects(client: FlaskClient, env: Env) -> None:
    """A version 1 ProductShipped (no service level) stored before the upgrade, beside version 2 ones."""
    from tests.support import rebuilt

    old = place(client)
    client.post(f"/orders/{old}/payments", json={"amount": "19.98", "reference": "r"})
    with env.engine.begin() as conn:  # written as the previous release wrote it
        conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)"
                " VALUES (gen_random_uuid(), :s, 3, 'ProductShipped', 1, CAST(:p AS jsonb), '{}')"
            ),
            {"s": old, "p": json.dumps({"order_id": old, "carrier": "DHL", "tracking_number": "OLD"})},
        )
    new = place(client)
    client.post(f"/orders/{new}/payments", json={"amount": "19.98", "reference": "r"})
    shipped = client.post(
        f"/orders/{new}/shipments", json={"carrier": "UPS", "tracking_number": "N", "service_level": "express"}
    )
    assert shipped.status_code == 200

    events = {e["stream_id"]: e for e in client.get("/events?type=ProductShipped&limit=1000").json["events"]}
    assert (events[old]["schema_version"], "service_level" in events[old]["payload"]) == (1, False)
    assert (events[new]["schema_version"], events[new]["payload"]["service_level"]) == (2, "express")
    assert client.get(f"/orders/{old}/history").json["status"] == "shipped"
    assert client.post(f"/orders/{old}/delivery").status_code == 200  # the command side folds v1 too

    shipments = {r["order_id"]: r["service_level"] for r in rebuilt(env)["order_summaries"] if r["carrier"]}
    assert (shipments[uuid.UUID(old)], shipments[uuid.UUID(new)]) == ("standard", "express")


def test_the_catalogue_page_is_current_and_in_the_openapi_document(client: FlaskClient) -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "events.md"
    assert page.read_text() == catalogue_markdown(), "run: orderstream catalogue > docs/events.md"
    spec = client.get("/openapi.json").json["x-event-catalogue"]
    assert spec["ProductShipped"]["schema_version"] == 2
    assert "1 -> 2" in spec["ProductShipped"]["upcasters"]


def test_the_feed_never_passes_an_event_whose_transaction_commits_late(client: FlaskClient, env: Env) -> None:
    from app.eventlog import store as eventstore
    from tests.support import META, created

    start = client.get("/events?limit=1000").json["next"]
    late, early = str(uuid.uuid4()), str(uuid.uuid4())
    with env.engine.begin() as slow:
        eventstore.append(slow, late, 0, [created(late)], META)
        with env.engine.begin() as fast:
            eventstore.append(fast, early, 0, [created(early)], META)
        page = client.get(start).json
        assert page["events"] == [] and page["next"] == start  # the early commit waits behind the late one
    served = [e["stream_id"] for e in client.get(start).json["events"]]
    assert served == [late, early]
