"""Webhooks on real PostgreSQL, Redis and local HTTP receivers.

In-process: an event becomes one delivery per endpoint (a redelivered batch adds none), signed so
that the Standard Webhooks reference library verifies it, retried on 5xx, 429 and network errors
with the same webhook-id, failed on another 4xx and redelivered by an operator, in version order per
order, erased personal data erased in the message, an endpoint failing for too long disabled.

With the real processes (`orderstream relay|webhooks|upkeep`, an rq worker): receivers that accept,
fail the first attempts, hang and close the connection each get every event; an rq worker killed
mid-delivery loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psutil
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from standardwebhooks.webhooks import WebhookVerificationError

from app.entry.factory import create_app
from app.eventlog import store as eventstore
from app.eventlog.keys import Keyring
from app.eventlog.personal import new_master_key
from app.platform.config import Settings
from tests.support import (
    BIN,
    CLOSE,
    HANG,
    HOLD,
    Env,
    Receiver,
    RedisServer,
    Worker,
    api_client,
    isolated_env,
    upkeep,
    wait_for,
    workers,
)
from workers.checkpoints import apply_batch
from workers.webhooks import deliveries, endpoints, send
from workers.webhooks.dispatch import DISPATCH

EMAIL = "ada@example.com"
ADDRESS = {"name": "Ada", "line1": "1 Loop Rd", "city": "London", "postal_code": "N1", "country": "GB"}
# For the processes: retries a second apart, a lost job's delivery sent again after 8 s.
FAST = {
    "ORDERSTREAM_WEBHOOKS_ALLOW_PRIVATE": "1",
    "ORDERSTREAM_WEBHOOKS_BACKOFF_S": "1,1,1,1",
    "ORDERSTREAM_WEBHOOKS_LEASE_S": "8",  # (above the 5 s an attempt may wait for an answer)
}


@pytest.fixture
def site(base_settings: Any, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Env, Flask]]:
    """A fresh environment whose webhooks may go to local receivers (here and in processes), and its app."""
    yield from _site(base_settings, template_db, monkeypatch)


@pytest.fixture
def own_redis_site(
    base_settings: Any, template_db: str, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> Iterator[tuple[Env, Flask]]:
    """The same, on a Redis server of the test's own, which it may kill and wipe."""
    yield from _site(base_settings, template_db, monkeypatch, redis_server.url)


def _site(base_settings: Any, template_db: str, monkeypatch: pytest.MonkeyPatch, redis_url: str | None = None
          ) -> Iterator[tuple[Env, Flask]]:  # fmt: skip
    with isolated_env(replace(base_settings, webhooks_allow_private=True), template_db, redis_url) as env:
        for name, value in env.process_env(**FAST).items():
            monkeypatch.setenv(name, value)  # send.deliver reads its settings from the environment
        app = create_app(env.settings)
        yield env, app
        app.extensions["orderstream"]["engine"].dispose()


def register(client: FlaskClient, url: str, types: list[str]) -> dict[str, Any]:
    response = client.post("/admin/webhooks", json={"url": url, "event_types": types, "description": "test"})
    assert response.status_code == 201, response.json
    return dict(response.json)


def place(client: FlaskClient, customer: str = "c-1", **personal: Any) -> str:
    body = {"customer_id": customer, "currency": "EUR", "items": [{"sku": "A", "quantity": 1, "unit_price": "2.50"}]}
    response = client.post("/orders", json={**body, **personal})
    assert response.status_code == 201, response.json
    return str(response.json["order_id"])


def pay(client: FlaskClient, order_id: str) -> None:
    response = client.post(f"/orders/{order_id}/payments", json={"amount": "2.50", "reference": "psp-1"})
    assert response.status_code == 200, response.json


def dispatch(env: Env, order_id: str) -> None:
    """What the `webhooks` group does with the order's events (twice: a redelivered batch adds nothing)."""
    with env.engine.connect() as conn:
        events = eventstore.load(conn, order_id)
    for _ in range(2):
        with env.engine.begin() as conn:
            apply_batch(conn, DISPATCH, events)


def send_due(env: Env) -> list[tuple[str, str]]:
    """What the pump and the rq jobs do, in-process: each due delivery attempted; (event type, status after)."""
    with env.engine.begin() as conn:
        due = deliveries.take_due(conn, send.policy(Settings.from_env()), lambda _job_ids: set())
    return [(d["event_type"], send.deliver(d["id"])) for d in due]


def retry_now(env: Env) -> None:
    """The backoff over (the processes' tests wait for it; these skip it)."""
    with env.engine.begin() as conn:
        conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'retrying'"))


def test_a_delivery_is_signed_verified_and_retried_with_the_same_id(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver([503, 429, CLOSE])
    hook = register(admin, receiver.url, ["OrderCreated"])
    assert hook["secret"].startswith("whsec_") and "secret" not in admin.get(f"/admin/webhooks/{hook['id']}").json
    order_id = place(admin)
    dispatch(env, order_id)
    for expected in ("retrying", "retrying", "retrying", "delivered"):
        assert send_due(env) == [("OrderCreated", expected)]
        retry_now(env)
    assert send_due(env) == []
    attempts = receiver.messages()
    assert [a.answer for a in attempts] == ["503", "429", CLOSE, "200"]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1  # receivers deduplicate by it
    message = attempts[-1].verified(hook["secret"])
    assert message["type"] == "OrderCreated"
    assert message["data"]["order_id"] == order_id and message["data"]["version"] == 1
    assert message["data"]["payload"]["customer_id"] == "c-1"
    [shown] = admin.get(f"/admin/webhooks/{hook['id']}/deliveries").json
    assert shown["status"] == "delivered" and shown["attempts"] == 4 and shown["last_status_code"] == 200
    assert shown["next_attempt_at"] is None and shown["delivered_at"] is not None
    with pytest.raises(WebhookVerificationError):
        attempts[-1].verified("whsec_" + "A" * 43 + "=")  # another secret does not verify it
    receiver.close()


def test_another_4xx_fails_at_once_and_an_operator_redelivers_it(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver([410, 302], location="http://127.0.0.1:9/elsewhere")
    hook = register(admin, receiver.url, ["*"])
    order_id = place(admin)
    dispatch(env, order_id)
    assert send_due(env) == [("OrderCreated", "failed")]
    retry_now(env)
    assert send_due(env) == []  # not retried
    deliveries_url = f"/admin/webhooks/{hook['id']}/deliveries"
    [failed] = admin.get(deliveries_url, query_string={"status": "failed"}).json
    assert failed["last_status_code"] == 410 and failed["next_attempt_at"] is None
    again = admin.post(f"{deliveries_url}/{failed['id']}/redeliver")
    assert again.status_code == 202 and again.json["status"] == "pending"
    assert send_due(env) == [("OrderCreated", "failed")]  # a redirect is not followed
    [redirected] = admin.get(deliveries_url).json
    assert redirected["last_status_code"] == 302 and "not followed" in redirected["last_error"]
    assert admin.post(f"{deliveries_url}/{failed['id']}/redeliver").status_code == 202
    assert send_due(env) == [("OrderCreated", "delivered")]
    assert len(receiver.messages()) == 3
    assert admin.post(f"{deliveries_url}/{failed['id'] + 1000}/redeliver").status_code == 404
    assert admin.get(f"/admin/webhooks/{uuid.uuid4()}/deliveries").status_code == 404
    receiver.close()


def test_events_of_one_order_reach_an_endpoint_in_version_order(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver([503])
    register(admin, receiver.url, ["*"])
    first, second = place(admin), place(admin)
    pay(admin, first)
    dispatch(env, first)
    dispatch(env, second)
    # The first order's OrderCreated meets a 503: its payment waits; the other order does not.
    assert send_due(env) == [("OrderCreated", "retrying"), ("OrderCreated", "delivered")]
    assert send_due(env) == []
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "delivered")]
    assert send_due(env) == [("PaymentProcessed", "delivered")]
    sent = [(r.message["data"]["order_id"], r.message["data"]["version"]) for r in receiver.messages()]
    assert sent == [(first, 1), (second, 1), (first, 1), (first, 2)]
    receiver.close()


def test_an_erased_customers_personal_data_is_erased_in_messages(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver([503])
    register(admin, receiver.url, ["OrderCreated"])
    order_id = place(admin, "c-ada", email=EMAIL, shipping_address=ADDRESS)
    dispatch(env, order_id)
    assert send_due(env) == [("OrderCreated", "retrying")]
    payload = receiver.messages()[0].message["data"]["payload"]
    assert payload["email"] == EMAIL and payload["personal_data"] == "shown" and "personal" not in payload
    assert admin.delete("/customers/c-ada/personal-data").status_code == 200
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "delivered")]  # the retry is built again: nothing left to send
    payload = receiver.messages()[1].message["data"]["payload"]
    assert payload["email"] is None and payload["shipping_address"] is None
    assert payload["personal_data"] == "erased"
    assert EMAIL.encode() not in receiver.messages()[1].body
    receiver.close()


def test_an_endpoint_failing_too_long_is_disabled_and_says_why(
    site: tuple[Env, Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, app = site
    monkeypatch.setenv("ORDERSTREAM_WEBHOOKS_DISABLE_AFTER_S", "0.2")
    admin, receiver = api_client(app), Receiver([500, 500, 500])
    hook = register(admin, receiver.url, ["OrderCreated"])
    dispatch(env, place(admin))
    assert send_due(env) == [("OrderCreated", "retrying")]
    assert admin.get(f"/admin/webhooks/{hook['id']}").json["failing_since"] is not None
    wait_for(lambda: env.scalar("SELECT now() - failing_since > interval '0.2 s' FROM webhook_endpoints"))
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "retrying")]
    shown = admin.get(f"/admin/webhooks/{hook['id']}").json
    assert shown["enabled"] is False and "HTTP 500" in shown["disabled_reason"]
    page = admin.get("/admin").get_data(as_text=True).split("<h2>Webhooks</h2>", 1)[1]
    assert receiver.url in page and "disabled: disabled automatically" in page
    dispatch(env, place(admin))  # a disabled endpoint's deliveries are recorded, and held
    retry_now(env)
    assert send_due(env) == []
    held = admin.get(f"/admin/webhooks/{hook['id']}/deliveries", query_string={"status": "pending"}).json
    assert len(held) == 1 and held[0]["next_attempt_at"] is None
    enabled = admin.patch(f"/admin/webhooks/{hook['id']}", json={"enabled": True}).json
    assert enabled["enabled"] and enabled["disabled_reason"] is None and enabled["failing_since"] is None
    assert sorted(send_due(env)) == [("OrderCreated", "delivered"), ("OrderCreated", "retrying")]  # the third 500
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "delivered")]
    assert admin.get(f"/admin/webhooks/{hook['id']}").json["failing_since"] is None
    receiver.close()


def test_an_endpoint_hears_only_of_events_after_it_was_registered_and_of_its_types(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver()
    before = place(admin)
    register(admin, receiver.url, ["PaymentProcessed"])
    after = place(admin)
    for order_id in (before, after):
        pay(admin, order_id)
        dispatch(env, order_id)
    assert send_due(env) == [("PaymentProcessed", "delivered")] * 2  # before's payment came after it
    changed = admin.patch(f"/admin/webhooks/{env.scalar('SELECT id::text FROM webhook_endpoints')}",
                          json={"event_types": ["OrderCreated"]})  # fmt: skip
    assert changed.status_code == 200 and changed.json["event_types"] == ["OrderCreated"]
    dispatch(env, place(admin))
    assert send_due(env) == [("OrderCreated", "delivered")]
    receiver.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("http://localhost/hook", "loopback"),
        ("ftp://example.com/hook", "http"),
        ("http://user:pw@example.com/hook", "credentials"),
        ("http://no-such-host.invalid/hook", "resolve"),
        ("http://a..b/hook", "not a URL"),
        ("http://" + "a" * 64 + ".example.com/hook", "not a URL"),
        ("http://[::1/hook", "not a URL"),
        ("http://[zz]/hook", "not a URL"),
        ("http://[64:ff9b::a00:1]/hook", "private"),  # NAT64 of 10.0.0.1
        ("http://[2002:a9fe:a9fe::]/hook", "link-local"),  # 6to4 of 169.254.169.254
        ("http://[::127.0.0.1]/hook", "IPv4-compatible"),
        ("http://[fec0::1]/hook", "site-local"),
    ],
)
def test_a_url_into_our_own_network_is_refused_at_registration(
    env: Env, app: Flask, client: FlaskClient, url: str, why: str
) -> None:
    response = client.post("/admin/webhooks", json={"url": url, "event_types": ["*"]})
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert why in response.json["detail"], response.json
    assert env.scalar("SELECT count(*) FROM webhook_endpoints WHERE url = :url", url=url) == 0
    hook = client.post("/admin/webhooks", json={"url": "https://93.184.215.14/hook", "event_types": ["*"]}).json
    changed = client.patch(f"/admin/webhooks/{hook['id']}", json={"url": url})  # a change is judged alike
    assert changed.status_code == 422 and why in changed.json["detail"], changed.json
    assert client.get(f"/admin/webhooks/{hook['id']}").json["url"] == "https://93.184.215.14/hook"
    assert client.delete(f"/admin/webhooks/{hook['id']}").status_code == 204


def test_link_local_is_refused_even_where_private_addresses_are_allowed(site: tuple[Env, Flask]) -> None:
    _env, app = site
    response = api_client(app).post("/admin/webhooks", json={"url": "http://169.254.169.254/", "event_types": ["*"]})
    assert response.status_code == 422 and "link-local" in response.json["detail"]


def test_a_url_that_turns_internal_after_registration_is_refused_at_delivery(
    site: tuple[Env, Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver()
    register(admin, receiver.url, ["OrderCreated"])
    dispatch(env, place(admin))
    monkeypatch.setenv("ORDERSTREAM_WEBHOOKS_ALLOW_PRIVATE", "")  # as if its name now resolved to loopback
    assert send_due(env) == [("OrderCreated", "failed")]
    assert receiver.messages() == []  # nothing sent
    assert "loopback" in env.scalar("SELECT last_error FROM webhook_deliveries")
    receiver.close()


def test_a_name_that_stops_resolving_is_retried_at_delivery_not_failed(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver()
    hook = register(admin, receiver.url, ["OrderCreated"])
    dispatch(env, place(admin))
    with env.engine.begin() as conn:  # as if DNS had lost its name (registered, it resolved)
        conn.execute(text("UPDATE webhook_endpoints SET url = 'http://gone.invalid/hook'"))
    assert send_due(env) == [("OrderCreated", "retrying")]
    assert "does not resolve" in env.scalar("SELECT last_error FROM webhook_deliveries")
    assert admin.patch(f"/admin/webhooks/{hook['id']}", json={"url": receiver.url}).status_code == 200
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "delivered")]
    receiver.close()


def test_an_attempt_that_never_reports_counts_as_failed_and_is_retried(site: tuple[Env, Flask]) -> None:
    """Its job started (the attempt counted) and never settled (its sender killed, or hung past its
    timeout): when the lease runs out, the pump concludes it as a failed attempt, on the backoff."""
    env, app = site
    admin, receiver = api_client(app), Receiver()
    register(admin, receiver.url, ["OrderCreated"])
    dispatch(env, place(admin))
    policy = send.policy(Settings.from_env())
    with env.engine.begin() as conn:
        [due] = deliveries.take_due(conn, policy, lambda _job_ids: set())
    with env.engine.begin() as conn:
        assert deliveries.start(conn, due["id"], due["job_id"], policy.lease_s)[0] == "go"  # ...and then nothing
    with env.engine.begin() as conn:  # its lease over
        conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now()"))
    with env.engine.begin() as conn:
        assert deliveries.take_due(conn, policy, lambda _job_ids: set()) == []  # not sent again at once
    [row] = env.rows("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("retrying", 1) and "did not report" in row["last_error"]
    retry_now(env)
    assert send_due(env) == [("OrderCreated", "delivered")]
    assert env.scalar("SELECT attempts FROM webhook_deliveries") == 2
    receiver.close()


def test_a_job_still_waiting_in_its_queue_keeps_its_delivery(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin = api_client(app)
    register(admin, "http://127.0.0.1:9/hook", ["OrderCreated"])
    dispatch(env, place(admin))
    policy = send.policy(Settings.from_env())
    with env.engine.begin() as conn:
        [due] = deliveries.take_due(conn, policy, lambda _job_ids: set())
    with env.engine.begin() as conn:  # its lease over, its job never started
        conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now()"))
    with env.engine.begin() as conn:  # still in the queue: not sent twice
        assert deliveries.take_due(conn, policy, lambda job_ids: set(job_ids)) == []
    assert env.scalar("SELECT job_id FROM webhook_deliveries") == due["job_id"]
    with env.engine.begin() as conn:
        conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now()"))
    with env.engine.begin() as conn:  # lost from the queue (with Redis): sent again under a new job
        [again] = deliveries.take_due(conn, policy, lambda _job_ids: set())
    assert again["job_id"] != due["job_id"] and env.scalar("SELECT attempts FROM webhook_deliveries") == 0


def test_a_master_key_rotation_rewraps_the_signing_secrets(site: tuple[Env, Flask]) -> None:
    env, app = site
    hook = register(api_client(app), "http://127.0.0.1:9/hook", ["*"])
    old, new = env.settings.master_key or "", new_master_key()
    rotating = env.process_env(ORDERSTREAM_MASTER_KEY=new, ORDERSTREAM_PREVIOUS_MASTER_KEYS=old)
    run = subprocess.run([str(BIN / "orderstream"), "keys", "rotate"], env=rotating, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert "1 webhook secrets re-wrapped" in run.stdout
    with env.engine.connect() as conn:  # the old master key is no longer needed
        assert (
            endpoints.secret_of(conn, Keyring.from_settings(replace(env.settings, master_key=new)), hook["id"])
            == (hook["secret"])
        )


def test_settled_deliveries_are_purged_after_they_are_kept(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver()
    register(admin, receiver.url, ["*"])
    first, second = place(admin), place(admin)
    dispatch(env, first)
    assert send_due(env) == [("OrderCreated", "delivered")]
    with env.engine.begin() as conn:
        conn.execute(text("UPDATE webhook_deliveries SET last_attempt_at = now() - interval '8 days'"))
    dispatch(env, second)
    with env.engine.begin() as conn:
        assert deliveries.purge(conn, 7 * 86_400, 100) == 1
    assert [r["stream_id"] for r in env.rows("SELECT stream_id FROM webhook_deliveries")] == [second]
    receiver.close()


def test_the_connection_itself_is_checked_where_it_landed() -> None:
    """DNS rebinding: a name checked as public may resolve to an internal address at connect time;
    the delivery's session refuses the socket before sending a byte."""
    from workers.webhooks.urls import RefusedUrl, session

    receiver = Receiver()
    with session(allow_private=False) as http, pytest.raises(RefusedUrl, match="loopback"):
        http.post(receiver.url, data=b"{}", timeout=5)
    assert receiver.messages() == []
    with session(allow_private=True) as http:
        assert http.post(receiver.url, data=b"{}", timeout=5).status_code == 200
    receiver.close()


def test_the_secret_is_kept_wrapped_under_the_master_key(site: tuple[Env, Flask]) -> None:
    env, app = site
    hook = register(api_client(app), "http://127.0.0.1:9/hook", ["*"])
    stored = bytes(env.scalar("SELECT secret_wrapped FROM webhook_endpoints"))
    assert hook["secret"].encode() not in stored and hook["secret"][6:].encode() not in stored
    with env.engine.connect() as conn:
        assert endpoints.secret_of(conn, Keyring.from_settings(env.settings), hook["id"]) == hook["secret"]


# The real processes: relay, dispatcher, rq's cron scheduler and an rq worker.


def delivered_everything(env: Env, receivers: list[Receiver]) -> bool:
    expected = env.scalar("SELECT count(*) FROM events") * len(receivers)
    return env.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == expected and all(
        len(r.accepted_ids()) * len(receivers) == expected for r in receivers
    )


def assert_in_version_order(receiver: Receiver, secret: str) -> None:
    """Each order's events reached the receiver in version order (retries repeat the last one only)."""
    seen: dict[str, int] = {}
    for received in receiver.messages():
        data = received.verified(secret)["data"]
        assert data["version"] in (seen.get(data["stream_id"], 0), seen.get(data["stream_id"], 0) + 1), data
        seen[data["stream_id"]] = data["version"]


def test_receivers_that_fail_hang_and_close_get_every_event_in_order(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin = api_client(app)
    receivers = [Receiver(), Receiver([503, 503]), Receiver([HANG]), Receiver([CLOSE, 500])]
    secrets = [register(admin, r.url, ["*"])["secret"] for r in receivers]
    with workers(env, ("relay",), ("webhooks",), ("sender",), **FAST), upkeep(env, **FAST):
        for _ in range(3):
            order_id = place(admin)
            pay(admin, order_id)
        wait_for(lambda: delivered_everything(env, receivers), timeout=60, what="every event at every receiver")
    events = env.scalar("SELECT count(*) FROM events")
    assert events >= 6
    attempts = {r["url"]: r["n"] for r in env.rows(
        "SELECT e.url, sum(d.attempts) AS n FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " GROUP BY e.url")}  # fmt: skip
    for receiver, secret, failures in zip(receivers, secrets, (0, 2, 1, 2), strict=True):
        assert_in_version_order(receiver, secret)
        # each failure (the 503s, the hang past the 5 s timeout, the closed connection, the 500) cost
        # one attempt more, counted, and sent again: nothing else was sent twice
        assert len(receiver.messages()) == attempts[receiver.url] == events + failures
        receiver.close()


def kill_with_work_horse(worker: Worker) -> None:
    """kill -9 an rq worker and any work-horse it forked for its job (a machine lost, say)."""
    victims = [*psutil.Process(worker.proc.pid).children(recursive=True), psutil.Process(worker.proc.pid)]
    for victim in victims:
        os.kill(victim.pid, signal.SIGKILL)
    worker.proc.wait(10)


def test_a_sender_killed_mid_delivery_loses_nothing(site: tuple[Env, Flask]) -> None:
    env, app = site
    admin, receiver = api_client(app), Receiver([HOLD])
    secret = register(admin, receiver.url, ["*"])["secret"]
    with workers(env, ("relay",), ("webhooks",), ("sender",), **FAST) as (*_, sender), upkeep(env, **FAST):
        orders = [place(admin) for _ in range(3)]
        wait_for(lambda: receiver.messages(), timeout=30, what="the first delivery to reach the receiver")
        kill_with_work_horse(sender)
        receiver.release()  # the answer goes nowhere: its job is gone
        with workers(env, ("sender",), **FAST):
            wait_for(lambda: delivered_everything(env, [receiver]), timeout=60, what="every event delivered")
    ids = [r.headers["webhook-id"] for r in receiver.messages()]
    assert len(ids) == len(orders) + 1  # the first sent twice (its answer lost), the rest once
    assert {r.verified(secret)["data"]["order_id"] for r in receiver.messages()} == set(orders)
    # the lost attempt counted (concluded as failed when its lease ran out), then the one delivered
    assert env.scalar("SELECT sum(attempts) FROM webhook_deliveries") == len(ids)
    receiver.close()


def test_the_readmes_receiver_verifies_a_real_delivery_and_ignores_a_repeat(site: tuple[Env, Flask]) -> None:
    """The receiver example in README's Webhooks section, run as written, against real deliveries."""
    import re
    import threading
    from pathlib import Path

    from werkzeug.serving import make_server

    env, app = site
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Webhooks", 1)[1]
    [example] = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    admin = api_client(app)
    hook = register(admin, "http://127.0.0.1:9/placeholder", ["OrderCreated"])
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(example.replace("whsec_...", hook["secret"]), namespace)  # (our own README's code)
    server = make_server("127.0.0.1", 0, namespace["app"], threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hooks/orderstream"
    assert admin.patch(f"/admin/webhooks/{hook['id']}", json={"url": url}).status_code == 200
    try:
        order_id = place(admin)
        dispatch(env, order_id)
        assert send_due(env) == [("OrderCreated", "delivered")]  # verified: 204
        [delivery] = admin.get(f"/admin/webhooks/{hook['id']}/deliveries").json
        assert delivery["last_status_code"] == 204
        assert admin.post(f"/admin/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver").status_code == 202
        assert send_due(env) == [("OrderCreated", "delivered")]  # the repeat acknowledged
        assert len(namespace["seen"]) == 1
        other = Keyring.from_settings(env.settings).master.wrap(hook["id"], b"whsec_" + b"A" * 44)
        with env.engine.begin() as conn:  # a wrong secret: the receiver refuses with 400, which is not retried
            conn.execute(text("UPDATE webhook_endpoints SET secret_wrapped = :s"), {"s": other})
        dispatch(env, place(admin))
        assert send_due(env) == [("OrderCreated", "failed")]
    finally:
        server.shutdown()


def test_the_dispatcher_killed_again_and_again_and_redis_wiped_loses_and_repeats_nothing(
    own_redis_site: tuple[Env, Flask], redis_server: RedisServer
) -> None:
    env, app = own_redis_site
    admin, receiver = api_client(app), Receiver()
    secret = register(admin, receiver.url, ["*"])["secret"]
    orders: list[str] = []

    def recorded() -> int:
        return int(env.scalar("SELECT count(*) FROM webhook_deliveries"))

    with workers(env, ("relay",), ("sender",), **FAST), upkeep(env, **FAST):
        for _ in range(3):  # kill -9 mid-work; the next one (same name) finishes its pending entries first
            dispatcher, before = Worker(env, "webhooks", "--name", "d-killed", **FAST), recorded()
            for _ in range(4):
                orders.append(place(admin))
                pay(admin, orders[-1])
            wait_for(lambda: recorded() > before, what="the dispatcher at work")  # noqa: B023
            dispatcher.kill()
        redis_server.kill()
        redis_server.wipe()
        redis_server.start()  # empty: no streams, no groups, no rq queue
        orders += [place(admin) for _ in range(3)]
        # (an rq worker mid-job dies with its Redis; under `make run`, supervisord starts it again)
        with workers(env, ("webhooks", "--name", "d-killed"), ("rqworker",), ("sender",), RQ_CONFIG="workers.preload",
                     **FAST):  # fmt: skip
            wait_for(lambda: delivered_everything(env, [receiver]), timeout=60, what="every event delivered")
    events = env.scalar("SELECT count(*) FROM events")
    assert recorded() == events  # one delivery per event, however often its entry came
    assert env.scalar("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'") == 0
    sent = {(m["data"]["stream_id"], m["data"]["version"]) for m in (r.verified(secret) for r in receiver.messages())}
    assert len(sent) == events and {order_id for order_id, _ in sent} == set(orders)
    receiver.close()
