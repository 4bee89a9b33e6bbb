"""Personal data on real PostgreSQL and Redis: sealed before it is written, shown only to those allowed
to see it, erasable for good by destroying the customer's data key, and found in clear nowhere: not in
a pg_dump of the database, not in Redis, not in the processes' logs, not in /metrics."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app.entry.factory import create_app
from app.eventlog.keys import Keyring, MasterKeyMissing
from app.eventlog.personal import new_master_key
from app.platform.tokens import create_token
from queries.order_summaries import ORDER_SUMMARIES
from queries.sales_stats import SALES_STATS
from tests.support import BIN, Env, api_client, wait_for, web_server, workers
from workers.checkpoints import apply_batch
from workers.rebuild import rebuild

EMAIL = "zq-ada-7f3a9c@example.org"
ADDRESS = {"name": "Ada Quuxley-Lovelace", "line1": "77 Zyzzyva Crescent", "line2": "Flat 9b",
           "city": "Wolvercote-under-Quux", "postal_code": "QX9 7ZZ", "country": "GB"}  # fmt: skip
PLAINTEXTS = (EMAIL, "Quuxley", "Zyzzyva", "Wolvercote", "QX9 7ZZ")


def order_body(customer: str, **personal: Any) -> dict[str, Any]:
    body = {"customer_id": customer, "currency": "EUR", "items": [{"sku": "A", "quantity": 2, "unit_price": "5.00"}]}
    return {**body, **personal}


def project(env: Env) -> None:
    from app.eventlog import store as eventstore

    with env.engine.begin() as conn:
        events = eventstore.read_events(conn, 0, 100_000)
        for projection in (ORDER_SUMMARIES, SALES_STATS):
            apply_batch(conn, projection, events)


@pytest.fixture
def site(fresh_env: Env) -> Iterator[tuple[Env, Flask]]:
    app = create_app(fresh_env.settings)
    yield fresh_env, app
    app.extensions["orderstream"]["engine"].dispose()


def token(env: Env, role: str, customer: str | None = None, personal_data: bool = False) -> str:
    return create_token(env.engine, f"t-{uuid.uuid4().hex[:8]}", role, customer, personal_data)


def as_(app: Flask, bearer: str) -> FlaskClient:
    return api_client(app, bearer)


def test_an_order_shows_its_personal_data_only_to_those_allowed(site: tuple[Env, Flask]) -> None:
    env, app = site
    customer = as_(app, token(env, "customer", "c-ada"))
    placed = customer.post("/orders", json=order_body("c-ada", email=EMAIL, shipping_address=ADDRESS))
    assert placed.status_code == 201, placed.json
    order_id = placed.json["order_id"]
    plain = as_(app, token(env, "writer")).post("/orders", json=order_body("c-bob"))
    project(env)
    readers = {
        "customer": customer,
        "admin": api_client(app),
        "granted reader": as_(app, token(env, "reader", personal_data=True)),
        "reader": as_(app, token(env, "reader")),
    }
    shown = {who: c.get(f"/orders/{order_id}").json for who, c in readers.items()}
    for who in ("customer", "admin", "granted reader"):
        assert (shown[who]["email"], shown[who]["shipping_address"]) == (EMAIL, ADDRESS), who
        assert shown[who]["personal_data"] == "shown", who
    assert (shown["reader"]["email"], shown["reader"]["shipping_address"]) == (None, None)
    assert shown["reader"]["personal_data"] == "withheld"
    assert readers["admin"].get(f"/orders/{plain.json['order_id']}").json["personal_data"] == "none"
    events = {who: c.get(f"/orders/{order_id}/events").json[0]["payload"] for who, c in readers.items()}
    assert events["customer"]["email"] == EMAIL and events["reader"]["personal_data"] == "withheld"
    assert "personal" not in events["admin"] and "ciphertext" not in str(events)
    history = customer.get(f"/orders/{order_id}/history?version=1").json
    assert (history["email"], history["shipping_address"]["city"]) == (EMAIL, ADDRESS["city"])
    feed = readers["reader"].get("/events").json["events"]
    assert [e["payload"]["personal_data"] for e in feed if e["type"] == "OrderCreated"] == ["withheld", "none"]
    listed = readers["admin"].get("/orders?customer_id=c-ada").json
    assert [(o["order_id"], o["email"]) for o in listed] == [(order_id, EMAIL)]


def test_a_customer_token_sees_and_does_only_what_is_its_own_and_other_ids_are_404(site: tuple[Env, Flask]) -> None:
    env, app = site
    ada, bob = as_(app, token(env, "customer", "c-ada")), as_(app, token(env, "customer", "c-bob"))
    adas = ada.post("/orders", json=order_body("c-ada", email=EMAIL)).json["order_id"]
    bobs = bob.post("/orders", json=order_body("c-bob")).json["order_id"]
    project(env)
    assert ada.post("/orders", json=order_body("c-bob")).status_code == 403  # only as itself
    for path in (f"/orders/{bobs}", f"/orders/{bobs}/events", f"/orders/{bobs}/history?version=1",
                 "/customers/c-bob/stats", "/customers/c-bob/personal-data"):  # fmt: skip
        assert ada.get(path).status_code == 404, path
    assert ada.delete("/customers/c-bob/personal-data").status_code == 404
    for path in ("/events", "/inventory", "/stats/sales", "/admin", f"/orders/{uuid.uuid4()}"):
        assert ada.get(path).status_code == 404, path
    assert ada.post(f"/orders/{adas}/payments", json={"amount": "10.00", "reference": "p"}).status_code == 404
    assert [o["order_id"] for o in ada.get("/orders").json] == [adas]  # its own only, whatever the filter
    assert [o["order_id"] for o in ada.get("/orders?customer_id=c-bob").json] == [adas]
    assert ada.get(f"/orders/{adas}").status_code == 200 and ada.get("/customers/c-ada/stats").status_code == 200
    export = ada.get("/customers/c-ada/personal-data").json
    assert [(o["order_id"], o["email"]) for o in export["orders"]] == [(adas, EMAIL)]
    assert as_(app, token(env, "reader")).get("/customers/c-ada/personal-data").status_code == 403
    waited = [ada.get(f"/orders/{o}?min_version=5") for o in (bobs, uuid.uuid4())]  # even waiting tells nothing
    assert [r.status_code for r in waited] == [409, 409]
    assert [r.json["projected_version"] for r in waited] == [0, 0]
    for bad in ("", " ", "a" * 65, "x/y"):  # a token bound to no real customer would see everyone's
        with pytest.raises(ValueError):
            token(env, "customer", bad)


@pytest.mark.parametrize(
    ("personal", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"shipping_address": {**ADDRESS, "country": "XX"}}, "shipping_address"),
        ({"shipping_address": {**ADDRESS, "country": "gb"}}, "shipping_address"),
        ({"shipping_address": {**ADDRESS, "phone": "123"}}, "shipping_address"),
        ({"shipping_address": {k: v for k, v in ADDRESS.items() if k != "city"}}, "shipping_address"),
        ({"shipping_address": {**ADDRESS, "postal_code": "x" * 21}}, "shipping_address"),
    ],
)
def test_invalid_personal_data_is_422_naming_the_field_and_appends_nothing(
    site: tuple[Env, Flask], personal: dict[str, Any], field: str
) -> None:
    env, app = site
    response = api_client(app).post("/orders", json=order_body("c-1", **personal))
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert field in response.json["errors"]["json"]
    assert env.scalar("SELECT count(*) FROM events") == 0
    assert env.scalar("SELECT count(*) FROM data_keys") == 0


def test_erasure_destroys_the_key_everywhere_for_good_and_once(site: tuple[Env, Flask]) -> None:
    env, app = site
    ada = as_(app, token(env, "customer", "c-ada"))
    admin = api_client(app)
    first = ada.post("/orders", json=order_body("c-ada", email=EMAIL, shipping_address=ADDRESS)).json["order_id"]
    second = ada.post("/orders", json=order_body("c-ada", email=EMAIL)).json["order_id"]
    project(env)
    erased = ada.delete("/customers/c-ada/personal-data")
    assert erased.status_code == 200, erased.json
    assert (erased.json["personal_data"], erased.json["keys_destroyed"]) == ("erased", 1)
    again = ada.delete("/customers/c-ada/personal-data").json  # idempotent: nothing more to destroy
    assert (again["keys_destroyed"], again["erased_at"], again["erased_by"]) == (
        0, erased.json["erased_at"], erased.json["erased_by"],
    )  # fmt: skip
    recorded = env.rows("SELECT payload, metadata FROM events WHERE type = 'CustomerDataErased'")
    assert len(recorded) == 1 and recorded[0]["payload"]["customer_id"] == "c-ada"
    assert recorded[0]["metadata"]["actor"] == erased.json["erased_by"]
    assert env.scalar("SELECT count(*) FROM data_keys WHERE wrapped IS NOT NULL") == 0

    def all_views() -> list[dict[str, Any]]:
        views = [admin.get(f"/orders/{o}").json for o in (first, second)]
        views += [o for o in admin.get("/orders").json]
        views += [e["payload"] for e in admin.get(f"/orders/{first}/events").json if e["type"] == "OrderCreated"]
        views += [admin.get(f"/orders/{first}/history?version=1").json]
        views += [e["payload"] for e in admin.get("/events").json["events"] if e["type"] == "OrderCreated"]
        views += admin.get("/customers/c-ada/personal-data").json["orders"]
        return views

    for view in all_views():
        assert (view["email"], view["shipping_address"], view["personal_data"]) == (None, None, "erased"), view
    reader = as_(app, token(env, "reader"))  # that it was erased is no secret: the data was
    assert reader.get(f"/orders/{first}").json["personal_data"] == "erased"
    rebuild(env.engine, ORDER_SUMMARIES)  # a projection rebuilt from the log holds nothing more
    assert all(view["personal_data"] == "erased" for view in all_views())
    kept = admin.get(f"/orders/{first}").json
    assert (kept["total"], kept["status"], kept["customer_id"]) == ("10.00", "pending", "c-ada")  # the rest stays
    later = ada.post("/orders", json=order_body("c-ada", email="new@example.org")).json["order_id"]
    project(env)  # new personal data after an erasure gets a new key; the old stays unreadable
    assert admin.get(f"/orders/{later}").json["email"] == "new@example.org"
    assert admin.get(f"/orders/{first}").json["personal_data"] == "erased"


def test_a_key_rotation_rewraps_every_data_key_and_the_data_still_opens(site: tuple[Env, Flask]) -> None:
    env, app = site
    order_id = api_client(app).post("/orders", json=order_body("c-ada", email=EMAIL)).json["order_id"]
    project(env)
    old = env.settings.master_key or ""
    new = new_master_key()
    rotating = env.process_env(ORDERSTREAM_MASTER_KEY=new, ORDERSTREAM_PREVIOUS_MASTER_KEYS=old)
    run = subprocess.run([str(BIN / "orderstream"), "keys", "rotate"], env=rotating, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert run.stdout.startswith("1 data keys and 0 webhook secrets re-wrapped")
    from dataclasses import replace

    rotated = create_app(replace(env.settings, master_key=new))  # the old master key is no longer needed
    assert api_client(rotated).get(f"/orders/{order_id}").json["email"] == EMAIL
    rotated.extensions["orderstream"]["engine"].dispose()
    with pytest.raises(MasterKeyMissing):
        Keyring.from_settings(replace(env.settings, master_key=None))


def pg_dump(env: Env) -> str:
    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    return subprocess.run([str(binary), "--no-owner", "-d", env.settings.database_url], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def redis_contents(env: Env) -> str:
    """Every key of the environment (its prefix and rq queue) and everything in it, as text."""
    out = []
    for key in env.redis.scan_iter(count=1000):
        kind = env.redis.type(key).decode()
        if kind == "string":
            value: Any = env.redis.get(key)
        elif kind == "hash":
            value = env.redis.hgetall(key)
        elif kind == "list":
            value = env.redis.lrange(key, 0, -1)
        elif kind == "set":
            value = env.redis.smembers(key)
        elif kind == "zset":
            value = env.redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = env.redis.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_the_plaintext_is_nowhere_but_in_responses_and_after_erasure_no_key_is_either(
    fresh_env: Env, tmp_path: Path
) -> None:
    env = fresh_env
    log = tmp_path / "web.log"
    with workers(env, ("relay",), ("projector",), ("fulfilment",)) as started, web_server(env, log=log) as base:
        auth = {"Authorization": f"Bearer {env.settings.admin_token}"}
        ids = []
        for n in range(3):
            body = order_body("c-ada", email=EMAIL, shipping_address=ADDRESS)
            headers = {**auth, "Idempotency-Key": f"k-{n}"}  # an idempotency record too
            ids.append(requests.post(f"{base}/orders", json=body, headers=headers, timeout=10).json()["order_id"])
        bad = requests.post(f"{base}/orders", json=order_body("c-ada", email=EMAIL, shipping_address={
            **ADDRESS, "country": "XX"}), headers=auth, timeout=10)  # fmt: skip
        assert bad.status_code == 422 and EMAIL not in bad.text  # a refusal does not echo it either
        wait_for(lambda: all(requests.get(f"{base}/orders/{o}", headers=auth, timeout=10).status_code == 200
                             for o in ids), what="the orders projected")  # fmt: skip
        assert requests.get(f"{base}/orders/{ids[0]}", headers=auth, timeout=10).json()["email"] == EMAIL
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        dump, in_redis = pg_dump(env), redis_contents(env)
        logs = log.read_text(errors="replace") + "".join(w.log() for w in started)
        for where, text in {"pg_dump": dump, "redis": in_redis, "logs": logs, "metrics": metrics}.items():
            found = [p for p in PLAINTEXTS if p in text]
            assert found == [], f"{found} in {where}"
        assert "c-ada" in dump and ids[0] in in_redis  # the searches do see the orders themselves
        wrapped = env.rows("SELECT key_id::text, wrapped FROM data_keys WHERE customer_id = 'c-ada'")
        assert len(wrapped) == 1
        erased = requests.delete(f"{base}/customers/c-ada/personal-data", headers=auth, timeout=10)
        assert erased.status_code == 200 and erased.json()["keys_destroyed"] == 1
        assert requests.get(f"{base}/orders/{ids[0]}", headers=auth, timeout=10).json()["personal_data"] == "erased"
        key_id, stored = wrapped[0]["key_id"], bytes(wrapped[0]["wrapped"])
        data_key = Keyring.from_settings(env.settings).master.unwrap(key_id, stored)
        material = [stored, data_key]  # what was stored, and what it hid
        forms = [form for m in material for form in (base64.b64encode(m).decode(), m.hex())]
        dump, in_redis = pg_dump(env), redis_contents(env)
        for where, text in {"pg_dump": dump, "redis": in_redis}.items():
            assert not any(form in text for form in forms), f"the wrapped key is still in {where}"
        assert wrapped[0]["key_id"] in dump  # its id stays (in the erasure event and the dead row): not its bytes


def test_an_erasure_survives_a_restore_of_a_backup_taken_before_it(site: tuple[Env, Flask]) -> None:
    """A database restored from before the erasure holds the wrapped key again; the erasure events
    of the log (kept apart from the backup) destroy it again."""
    env, app = site
    admin = api_client(app)
    order_id = admin.post("/orders", json=order_body("c-ada", email=EMAIL)).json["order_id"]
    project(env)
    backup = env.rows("SELECT key_id::text AS key_id, customer_id, wrapped, master_key_id FROM data_keys")
    assert admin.delete("/customers/c-ada/personal-data").json["keys_destroyed"] == 1
    with env.engine.begin() as conn:  # the restore: the key row as the backup had it
        conn.execute(text("DELETE FROM data_keys"))
        restore = text(
            "INSERT INTO data_keys (key_id, customer_id, wrapped, master_key_id)"
            " VALUES (CAST(:key_id AS uuid), :customer_id, :wrapped, :master_key_id)"
        )
        conn.execute(restore, backup[0])
    assert admin.get(f"/orders/{order_id}").json["personal_data"] == "shown"  # what a restore brings back
    run = subprocess.run([str(BIN / "orderstream"), "keys", "reapply-erasures"], env=env.process_env(),
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert run.stdout.startswith("1 data keys destroyed again")
    assert admin.get(f"/orders/{order_id}").json["personal_data"] == "erased"
