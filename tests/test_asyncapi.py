"""The AsyncAPI document (GET /asyncapi.json) as its readers use it: valid by the AsyncAPI project's own
parser, covering every event type and schema version, and true of what actually leaves the service.

Given every event type written through the API, the fulfilment process manager and the relay (and
version 1 events as the previous release wrote them), then every entry on the streams matches its
message's schema in the document, and so does every webhook message, with personal data shown,
absent, and erased. The parser runs under node from tools/asyncapi (`make test` installs it with
npm ci): missing, the tests fail, they do not skip.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7
from sqlalchemy import text

from app.eventlog import store as eventstore
from app.eventlog.events import EVENT_TYPES, SCHEMA_VERSIONS
from app.eventlog.keys import Keyring
from app.eventlog.payload_schemas import PERSONAL_DATA
from queries import personal
from tests.support import Env, api_client, in_thread, relay_loop, stream_entries, wait_for
from workers.checkpoints import apply_batch
from workers.fulfilment.process import process_manager
from workers.webhooks.send import message, message_id
from workers.webhooks.signing import headers, new_secret

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "asyncapi"
STATIC = ROOT / "src" / "app" / "static" / "asyncapi"
RENDERER = TOOLS / "node_modules" / "@asyncapi" / "react-component"
STANDALONE = "browser/standalone"
VENDORED = {"index.js": f"{STANDALONE}/index.js", "index.js.LICENSE.txt": f"{STANDALONE}/index.js.LICENSE.txt",
            "default.min.css": "styles/default.min.css", "LICENSE": "LICENSE"}  # fmt: skip
INSTALL = "install the tools: make tools/asyncapi/node_modules/.installed (make test does)"
DOCUMENT_URI = "urn:orderstream:asyncapi"
ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "line2": None, "city": "London",
           "postal_code": "SW1Y 4JH", "country": "GB"}  # fmt: skip


@pytest.fixture(scope="module")
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/asyncapi.json")  # public: no token
    assert response.status_code == 200 and response.content_type == "application/json"
    return response.json  # type: ignore[no-any-return]


def validate_with_the_parser(document: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(document))
    assert (TOOLS / "node_modules" / "@asyncapi" / "parser").is_dir(), INSTALL
    return subprocess.run(["node", str(TOOLS / "validate.mjs"), str(path)], capture_output=True, text=True, timeout=60)


def validator(document: dict[str, Any], pointer: str) -> Draft7Validator:
    """A validator of the schema at `pointer` in the document, its $refs resolved within the document."""
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT7.create_resource(document))
    schema = {"$ref": f"{DOCUMENT_URI}#{pointer}"}
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def errors(validator: Draft7Validator, instance: Any) -> list[str]:
    """What is wrong with the instance (for alternatives, oneOf, what is wrong with each)."""
    found = [leaf for e in validator.iter_errors(instance) for leaf in (e.context or [e])]
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]


# --- the document ------------------------------------------------------------------------------------------------


def test_the_asyncapi_projects_parser_finds_no_error(document: dict[str, Any], tmp_path: Path) -> None:
    done = validate_with_the_parser(document, tmp_path / "asyncapi.json")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "valid AsyncAPI 3.0.0 document" in done.stdout
    broken = copy.deepcopy(document)
    broken["components"]["schemas"]["Line"]["type"] = "objekt"
    refused = validate_with_the_parser(broken, tmp_path / "broken.json")
    assert refused.returncode == 1 and "components/schemas/Line" in refused.stderr, refused.stderr


def test_its_messages_cover_every_event_type_and_schema_version(document: dict[str, Any]) -> None:
    channels = document["channels"]
    assert set(channels["events"]["messages"]) == set(EVENT_TYPES)
    assert set(channels["webhooks"]["messages"]) == {f"{name}.webhook" for name in EVENT_TYPES}
    schemas = document["components"]["schemas"]
    for name, current in SCHEMA_VERSIONS.items():
        for kind in ("envelope", "webhook"):
            envelope = schemas[f"{name}.{kind}"]
            envelope = envelope["properties"]["data"] if kind == "webhook" else envelope
            assert envelope["properties"]["schema_version"]["enum"] == list(range(1, current + 1)), (name, kind)
        assert {f"{name}.v{v}" for v in range(1, current + 1)} <= set(schemas), name
    assert "service_level" not in schemas["ProductShipped.v1"]["properties"]  # what its upcaster adds
    assert "service_level" in schemas["ProductShipped.v2"]["required"]


def test_the_partitions_and_the_key_prefix_are_this_deployments(document: dict[str, Any], env: Env) -> None:
    events = document["channels"]["events"]
    assert events["address"] == f"{env.settings.key_prefix}:events:{{partition}}"
    assert events["parameters"]["partition"]["enum"] == [str(n) for n in range(env.settings.stream_partitions)]


def test_the_personal_data_states_are_those_the_api_shows() -> None:
    assert PERSONAL_DATA == (personal.SHOWN, personal.WITHHELD, personal.ERASED, personal.NONE)


def test_the_page_and_the_document_are_public_and_linked_from_the_api_docs_and_the_admin_page(app: Flask) -> None:
    stranger = app.test_client()
    page = stranger.get("/docs/asyncapi")
    assert page.status_code == 200 and b"AsyncApiStandalone.render" in page.data
    assert stranger.get("/static/asyncapi/index.js").status_code == 200
    assert "/docs/asyncapi" in stranger.get("/openapi.json").json["info"]["description"]
    assert b'href="/docs/asyncapi"' in api_client(app).get("/admin", headers={"Accept": "text/html"}).data


def test_the_vendored_renderer_is_the_locked_npm_package() -> None:
    assert (RENDERER / "package.json").is_file(), INSTALL
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/@asyncapi/react-component"]["version"]
    assert json.loads((RENDERER / "package.json").read_text())["version"] == locked, INSTALL
    assert (STATIC / "VERSION").read_text().strip() == f"@asyncapi/react-component {locked}", "make asyncapi-bundle"
    for vendored, original in VENDORED.items():
        assert (STATIC / vendored).read_bytes() == (RENDERER / original).read_bytes(), "make asyncapi-bundle"


# --- what leaves the service -------------------------------------------------------------------------------------


@dataclass
class Sent:
    entries: list[dict[bytes, bytes]]  # every stream entry's fields
    webhooks: list[dict[str, Any]]  # every event's webhook message, before the erasure and after it


@pytest.fixture(scope="module")
def sent(app: Flask, env: Env) -> Sent:
    """Every event type written (through the API, the process manager, and as the previous release
    wrote version 1 events), its webhook messages built, the customer erased, the log relayed."""
    client = api_client(app)
    keyring = Keyring.from_settings(env.settings)
    write_every_event_type(client, env)
    webhooks = webhook_messages(env, keyring)
    assert client.delete("/customers/ada/personal-data").status_code == 200  # CustomerDataErased
    webhooks += webhook_messages(env, keyring)
    with in_thread(relay_loop(env)):
        wait_for(lambda: env.unpublished() == 0, what="every event published")
    return Sent([fields for _key, fields in stream_entries(env)], webhooks)


def write_every_event_type(client: FlaskClient, env: Env) -> None:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    command(client, f"/inventory/{sku}/receipts", {"quantity": 10, "reference": "delivery 1"})  # StockReceived
    command(client, f"/inventory/{sku}/adjustments", {"quantity": -1, "reason": "damaged"})  # StockAdjusted
    items = [{"sku": sku, "quantity": 2, "unit_price": "9.99"}, {"sku": "LOOSE-1", "quantity": 1, "unit_price": "1"}]
    personal = {"email": "ada@example.org", "shipping_address": ADDRESS}  # sealed in OrderCreated
    kept = command(client, "/orders", {"customer_id": "ada", "currency": "EUR", "items": items, **personal})["order_id"]
    react(env)  # UnitsReserved, StockReserved
    command(client, f"/orders/{kept}/items", {"sku": sku, "quantity": 1, "unit_price": "9.99"})  # ItemAdded
    assert client.delete(f"/orders/{kept}/items/LOOSE-1").status_code == 200  # ItemRemoved
    command(client, f"/orders/{kept}/payments", {"amount": "29.97", "reference": "psp-1"})  # PaymentProcessed
    command(client, f"/orders/{kept}/shipments", {"carrier": "DHL", "tracking_number": "T1"})  # ProductShipped
    command(client, f"/orders/{kept}/delivery", None)  # OrderDelivered
    react(env)  # UnitsShipped
    dropped = command(client, "/orders", {"customer_id": "bob", "currency": "EUR",
                                          "items": [{"sku": sku, "quantity": 1, "unit_price": "9.99"}]})  # fmt: skip
    react(env)
    command(client, f"/orders/{dropped['order_id']}/cancellation", {"reason": "changed my mind"})  # OrderCancelled
    command(client, "/orders", {"customer_id": "cy", "currency": "EUR",
                                "items": [{"sku": sku, "quantity": 99, "unit_price": "9.99"}]})  # fmt: skip
    react(env)  # UnitsReleased (the cancelled order's), OrderRejected (stock short)
    write_version_1_events(env)


def command(client: FlaskClient, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code in (200, 201), (path, response.json)
    return response.json  # type: ignore[no-any-return]


def react(env: Env) -> None:
    """The fulfilment process manager meets the whole log (its checkpoints skip what it handled)
    until it appends nothing new."""
    manager, before = process_manager(env.settings), None
    while (count := env.scalar("SELECT count(*) FROM events")) != before:
        before = count
        with env.engine.begin() as conn:
            apply_batch(conn, manager, eventstore.read_events(conn, 0, 100_000))


def write_version_1_events(env: Env) -> None:
    """An OrderCreated and a ProductShipped as the previous release wrote them (schema version 1)."""
    order_id = str(uuid.uuid4())
    v1 = {"OrderCreated": {"order_id": order_id, "customer_id": "old", "currency": "EUR",
                           "lines": [{"sku": "A", "quantity": 1, "unit_price": "1.00"}]},
          "ProductShipped": {"order_id": order_id, "carrier": "DHL", "tracking_number": "OLD"}}  # fmt: skip
    with env.engine.begin() as conn:
        for version, (event_type, payload) in enumerate(v1.items(), start=1):
            conn.execute(
                text(
                    "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)"
                    " VALUES (gen_random_uuid(), :s, :v, :t, 1, CAST(:p AS jsonb), CAST(:m AS jsonb))"
                ),
                {"s": order_id, "v": version, "t": event_type, "p": json.dumps(payload),
                 "m": json.dumps({"request_id": None, "correlation_id": None, "causation_id": None, "actor": "old"})},
            )  # fmt: skip


def webhook_messages(env: Env, keyring: Keyring) -> list[dict[str, Any]]:
    with env.engine.connect() as conn:
        events = eventstore.read_events(conn, 0, 100_000)
        return [message(conn, keyring, event.stream_id, event.version) for event in events]


def test_every_stream_entry_matches_its_message_in_the_document(sent: Sent, document: dict[str, Any]) -> None:
    headers = validator(document, "/components/schemas/StreamEntryFields")
    seen = set()
    for fields in sent.entries:
        envelope = orjson.loads(fields[b"envelope"])
        payload = validator(document, f"/components/messages/{envelope['type']}/payload")
        assert errors(payload, envelope) == [], envelope
        readable = {key.decode(): value.decode() for key, value in fields.items() if key != b"envelope"}
        assert errors(headers, readable) == [], readable
        seen.add((envelope["type"], envelope["schema_version"]))
    assert {event_type for event_type, _ in seen} == set(EVENT_TYPES)
    assert {("OrderCreated", 1), ("OrderCreated", 2), ("ProductShipped", 1), ("ProductShipped", 2)} <= seen
    sealed = next(orjson.loads(f[b"envelope"]) for f in sent.entries if b'"customer_id":"ada"' in f[b"envelope"])
    assert set(sealed["payload"]["personal"]) == {"subject", "key_id", "ciphertext"}  # sealed on the streams


def test_a_payload_unlike_its_schema_is_refused(sent: Sent, document: dict[str, Any]) -> None:
    """The check above can fail: money as a JSON number, an unknown field, a payload of the other version."""
    envelope = next(orjson.loads(f[b"envelope"]) for f in sent.entries if f[b"type"] == b"ItemAdded")
    payload = validator(document, "/components/messages/ItemAdded/payload")
    for change in ({"unit_price": 9.99}, {"surprise": 1}):
        assert errors(payload, {**envelope, "payload": {**envelope["payload"], **change}}) != [], change
    shipped = next(orjson.loads(f[b"envelope"]) for f in sent.entries if b'"schema_version":2' in f[b"envelope"]
                   and f[b"type"] == b"ProductShipped")  # fmt: skip
    assert errors(validator(document, "/components/messages/ProductShipped/payload"), {**shipped, "schema_version": 1})


def test_every_webhook_message_matches_its_message_in_the_document(sent: Sent, document: dict[str, Any]) -> None:
    shown = {}
    for body in sent.webhooks:
        schema = validator(document, f"/components/messages/{body['type']}.webhook/payload")
        assert errors(schema, json.loads(json.dumps(body, default=str))) == [], body
        if body["type"] == "OrderCreated" and "personal_data" in body["data"]["payload"]:
            shown.setdefault(body["data"]["payload"]["customer_id"], []).append(body["data"]["payload"])
    assert {body["type"] for body in sent.webhooks} == set(EVENT_TYPES)
    event = sent.webhooks[0]["data"]
    msg_id = message_id({"event_id": event["event_id"], "endpoint_id": str(uuid.uuid4())})
    sent_headers = headers(new_secret(), msg_id, int(time.time()), json.dumps(sent.webhooks[0]).encode())
    assert errors(validator(document, f"/components/messages/{event['type']}.webhook/headers"), sent_headers) == []
    ada_before, ada_after = shown["ada"]
    assert (ada_before["personal_data"], ada_before["email"], ada_before["shipping_address"]) == (
        "shown", "ada@example.org", ADDRESS)  # fmt: skip
    assert (ada_after["personal_data"], ada_after["email"], ada_after["shipping_address"]) == ("erased", None, None)
    assert shown["bob"][0]["personal_data"] == "none"
