"""The HTTP contract: tokens and roles, idempotent retries, read-your-writes, conditional reads, limits."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import subprocess
import threading
import time
from dataclasses import replace

import pytest
import requests
from flask import Flask

from app.entry.factory import create_app
from app.platform.tokens import create_token
from queries.schemas import OrderSchema
from tests.support import BIN, ORDER, Env, api_client, events_of, place, shown, wait_for, web_server, workers

PAY = {"amount": "19.98", "reference": "psp-1"}
SHIP = {"carrier": "DHL", "tracking_number": "T-1"}


@pytest.fixture(scope="module")
def tokens(env: Env) -> dict[str, str]:
    return {role: create_token(env.engine, f"contract-{role}", role) for role in ("reader", "writer", "admin")}


def test_no_or_bad_token_is_401_problem_with_a_challenge(app: Flask) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic !!!"}):
        response = app.test_client().get("/orders", headers=headers)
        assert response.status_code == 401, headers
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert app.test_client().get("/rq/").headers["WWW-Authenticate"].startswith("Basic")


def test_docs_and_spec_are_public(app: Flask) -> None:
    assert app.test_client().get("/openapi.json").status_code == 200
    assert app.test_client().get("/docs").status_code == 200


def test_each_role_reaches_what_it_may_and_gets_403_beyond(app: Flask, tokens: dict[str, str]) -> None:
    reader, writer, admin = (api_client(app, tokens[r]) for r in ("reader", "writer", "admin"))
    assert reader.get("/orders").status_code == 200
    refused = reader.post("/orders", json=ORDER)
    assert refused.status_code == 403 and refused.content_type == "application/problem+json"
    assert "has role reader" in refused.json["detail"]
    assert writer.post("/orders", json=ORDER).status_code == 201
    assert writer.get("/orders").status_code == 200
    assert writer.get("/admin/dead-letters").status_code == 403
    assert admin.get("/admin/dead-letters").status_code == 200
    assert admin.get("/rq/", headers={"Authorization": ""}).status_code == 401
    basic = app.test_client().get("/rq/", auth=("anyone", tokens["admin"]))
    assert basic.status_code == 200 and b"RQ dashboard" in basic.data


def test_the_actor_is_the_tokens_name_and_tokens_never_reach_the_logs(
    app: Flask, env: Env, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    order_id = api_client(app, tokens["writer"]).post("/orders", json=ORDER).json["order_id"]
    api_client(app, tokens["writer"]).post(f"/orders/{order_id}/payments", json={"amount": "1", "reference": "x"})
    metadata = env.rows("SELECT metadata FROM events WHERE stream_id = :s", s=order_id)[0]["metadata"]
    assert metadata["actor"] == "contract-writer"
    assert all(token not in caplog.text for token in tokens.values())


def test_tokens_are_managed_from_the_cli_and_a_revoked_one_stops_working(env: Env) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "orderstream"), "tokens", *args], env=env.process_env(),
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    created = cli("create", "cli-reader", "--role", "reader")
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("os_")
    listed = cli("list").stdout
    assert "cli-reader" in listed and "active" in listed and token not in listed
    assert env.scalar("SELECT count(*) FROM api_tokens WHERE token_hash LIKE :t", t=f"%{token}%") == 0  # hashed
    assert api_client(create_app(env.settings), token).get("/orders").status_code == 200
    assert cli("revoke", "cli-reader").returncode == 0
    assert api_client(create_app(env.settings), token).get("/orders").status_code == 401  # a fresh process
    assert cli("revoke", "cli-reader").returncode != 0


def test_a_retry_with_the_same_key_returns_the_first_response_and_appends_nothing(client, env: Env) -> None:  # type: ignore[no-untyped-def]
    first = client.post("/orders", json=ORDER, headers={"Idempotency-Key": "create-1"})
    again = client.post("/orders", json=ORDER, headers={"Idempotency-Key": "create-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert (again.headers["Location"], again.headers["ETag"]) == (first.headers["Location"], first.headers["ETag"])
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    order_id = first.json["order_id"]
    assert events_of(env, order_id) == ["OrderCreated"]
    assert env.scalar("SELECT count(*) FROM events WHERE metadata->>'request_id' = :r",
                      r=first.headers["X-Request-ID"]) == 1  # fmt: skip

    paid = client.post(f"/orders/{order_id}/payments", json=PAY, headers={"Idempotency-Key": "pay-1"})
    repaid = client.post(f"/orders/{order_id}/payments", json=PAY, headers={"Idempotency-Key": "pay-1"})
    assert (paid.status_code, repaid.status_code, repaid.json) == (200, 200, paid.json)
    assert events_of(env, order_id) == ["OrderCreated", "PaymentProcessed"]


def test_the_same_key_with_another_body_is_refused(client, env: Env) -> None:  # type: ignore[no-untyped-def]
    client.post("/orders", json=ORDER, headers={"Idempotency-Key": "create-2"})
    before = env.scalar("SELECT count(*) FROM events")
    other = client.post(
        "/orders", json={**ORDER, "customer_id": "someone-else"}, headers={"Idempotency-Key": "create-2"}
    )
    assert other.status_code == 422 and other.content_type == "application/problem+json"
    assert "different request" in other.json["detail"]
    assert env.scalar("SELECT count(*) FROM events") == before
    assert client.post("/orders", json=ORDER, headers={"Idempotency-Key": "x" * 300}).status_code == 400


def test_concurrent_duplicates_with_one_key_execute_once(app: Flask, env: Env) -> None:
    racers, barrier, answers = 8, threading.Barrier(8), []

    def send() -> None:
        client = api_client(app)
        barrier.wait()
        answers.append(client.post("/orders", json=ORDER, headers={"Idempotency-Key": "race-1"}))

    threads = [threading.Thread(target=send) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a.status_code for a in answers} == {201}
    assert len({a.json["order_id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == racers - 1
    assert env.scalar("SELECT count(*) FROM events WHERE stream_id = :s", s=answers[0].json["order_id"]) == 1


def test_keys_belong_to_their_token_and_expire(env: Env, tokens: dict[str, str]) -> None:
    app = create_app(env.settings)
    mine = api_client(app, tokens["writer"]).post("/orders", json=ORDER, headers={"Idempotency-Key": "k"})
    theirs = api_client(app, tokens["admin"]).post("/orders", json=ORDER, headers={"Idempotency-Key": "k"})
    assert mine.json["order_id"] != theirs.json["order_id"]
    short = api_client(create_app(replace(env.settings, idempotency_ttl_s=0)))
    first = short.post("/orders", json=ORDER, headers={"Idempotency-Key": "brief"})
    later = short.post("/orders", json=ORDER, headers={"Idempotency-Key": "brief"})
    assert first.json["order_id"] != later.json["order_id"]  # the key had expired: a new execution


def test_read_your_writes_under_load_never_shows_an_older_state(fresh_env: Env) -> None:
    # six clients in one process: as many waiting reads as clients (gunicorn spreads them over workers)
    app = create_app(replace(fresh_env.settings, max_waiting_reads=6))
    failures: list[str] = []

    def client_session() -> None:
        client = api_client(app)
        for _ in range(8):
            created = client.post("/orders", json=ORDER)
            order_id = created.json["order_id"]
            steps = [
                ("post", f"/orders/{order_id}/items", {"sku": "B", "quantity": 1, "unit_price": "1.00"}),
                ("delete", f"/orders/{order_id}/items/B", None),
                ("post", f"/orders/{order_id}/payments", PAY),
            ]
            for method, path, body in steps:
                version = client.open(path, method=method, json=body).json["version"]
                read = client.get(f"/orders/{order_id}?min_version={version}")
                if read.status_code != 200 or read.json["version"] < version:
                    failures.append(f"{order_id} v{version}: {read.status_code} {read.json}")
                elif read.headers["X-Projection-Version"] != str(read.json["version"]):
                    failures.append("X-Projection-Version disagrees with the body")

    with workers(fresh_env, ("relay",), ("projector",)):
        warm_up = place(api_client(app))  # the projector is running once it shows an order
        wait_for(lambda: api_client(app).get(f"/orders/{warm_up}").status_code == 200, what="the projector")
        threads = [threading.Thread(target=client_session) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_a_version_not_reached_in_time_is_409_with_retry_after(env: Env) -> None:
    client = api_client(create_app(replace(env.settings, read_wait_ms=100)))
    order_id = place(client)  # no projector runs in this module: the projection never gets it
    response = client.get(f"/orders/{order_id}?min_version=1")
    assert response.status_code == 409 and response.headers["Retry-After"] == "1"
    assert (response.json["wanted_version"], response.json["projected_version"]) == (1, 0)
    assert client.get(f"/orders/{order_id}").status_code == 404  # without min_version: simply not there


def test_an_orders_etag_is_its_version_for_if_none_match_and_if_match(fresh_env: Env) -> None:
    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",)):
        order_id = place(client)
        shown(client, order_id, 1)  # the projector process has started
        first = client.get(f"/orders/{order_id}?min_version=1")
        etag = first.headers["ETag"]
        assert etag == '"1"' == f'"{first.headers["X-Projection-Version"]}"'
        unchanged = client.get(f"/orders/{order_id}", headers={"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.data == b"" and unchanged.headers["ETag"] == etag
        assert client.get(f"/orders/{order_id}", headers={"If-None-Match": 'W/"1"'}).status_code == 304  # weak
        for matching in (etag, "*"):
            assert client.get(f"/orders/{order_id}", headers={"If-Match": matching}).status_code == 200
        other = client.get(f"/orders/{order_id}", headers={"If-Match": '"7"'})
        assert other.status_code == 412 and other.content_type == "application/problem+json"
        assert "shown at version 1" in other.json["detail"]
        version = client.post(f"/orders/{order_id}/payments", json=PAY, headers={"If-Match": etag}).json["version"]
        changed = client.get(f"/orders/{order_id}?min_version={version}", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["ETag"] == '"2"' and changed.json["status"] == "paid"
        stale = client.post(f"/orders/{order_id}/shipments", json=SHIP, headers={"If-Match": etag})
        assert stale.status_code == 412  # read, then change: the ETag read before the payment is stale now
        listed = client.get("/orders")
        assert client.get("/orders", headers={"If-None-Match": listed.headers["ETag"]}).status_code == 304


def test_an_order_reads_exactly_as_its_documented_schema_in_every_state(fresh_env: Env) -> None:
    """GET /orders/{id} encodes its document directly: it must be what OrderSchema would show."""
    client = api_client(create_app(fresh_env.settings))
    yen = {"customer_id": "c-2", "currency": "JPY", "items": [{"sku": "Z", "quantity": 3, "unit_price": "500"}]}
    with workers(fresh_env, ("relay",), ("projector",)):
        placed, shipped, cancelled = place(client), place(client), place(client, yen)
        client.post(f"/orders/{shipped}/payments", json=PAY)
        client.post(f"/orders/{shipped}/shipments", json=SHIP)
        client.post(f"/orders/{cancelled}/cancellation", json={"reason": "changed my mind"})
        documents = {
            order_id: shown(client, order_id, version)
            for order_id, version in ((placed, 1), (shipped, 3), (cancelled, 2))
        }
    schema = OrderSchema()
    for document in documents.values():
        assert schema.dump(schema.load(document)) == document  # same fields, same formats, nothing more
    assert documents[shipped]["shipment"] == {**SHIP, "service_level": "standard"}
    assert documents[shipped]["status"] == "shipped" and documents[placed]["shipment"] is None
    assert documents[cancelled]["cancellation_reason"] == "changed my mind"
    assert documents[cancelled]["items"] == [{"sku": "Z", "quantity": 3, "unit_price": "500", "line_total": "1500"}]
    assert (documents[cancelled]["total"], documents[placed]["total"]) == ("1500", "19.98")


def test_rate_limits_per_token_answer_429_with_retry_after(env: Env, tokens: dict[str, str]) -> None:
    app = create_app(replace(env.settings, rate_limit="3 per minute", key_prefix=env.settings.key_prefix + ":rl"))
    limited = api_client(app, tokens["reader"])
    statuses = [limited.get("/orders").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = limited.get("/orders")
    assert refused.content_type == "application/problem+json" and 1 <= int(refused.headers["Retry-After"]) <= 61
    assert api_client(app, tokens["writer"]).get("/orders").status_code == 200  # another token, its own budget


def test_text_postgresql_cannot_store_is_refused_not_a_500(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/orders", json={**ORDER, "customer_id": "a\u0000b"}).status_code == 422
    assert client.post("/orders", json={**ORDER, "customer_id": "\ud800"}).status_code in (400, 422)
    assert client.get("/customers/a%00b/stats").status_code == 400
    assert client.get("/orders?customer_id=%00").status_code == 400


def test_chunked_and_deeply_nested_bodies_are_refused_not_a_500(app: Flask) -> None:
    client = api_client(app)
    chunked = client.post(
        "/orders",
        input_stream=io.BytesIO(b'{"customer_id": "a\\u0000b", "currency": "EUR", "items": []}'),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    assert chunked.status_code in (400, 422)
    deep = client.post("/orders", data="[" * 20_000 + "]" * 20_000, content_type="application/json")
    assert deep.status_code == 400 and deep.content_type == "application/problem+json"
    assert client.get("/stats/sales?to=0001-01-01").status_code == 200


def test_a_redis_that_hangs_costs_one_request_its_timeout_not_every_request(env: Env) -> None:
    """The rate limit's Redis accepts connections and never answers: the first request waits out the
    socket timeout (1 s) and is counted in memory; the next ones skip Redis for a while instead of
    each waiting again (30 requests would take 30 s)."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(silent.accept()[0])

    acceptor = threading.Thread(target=accept_and_say_nothing, daemon=True)
    acceptor.start()
    try:
        hung = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        client = api_client(create_app(replace(env.settings, redis_url=hung)))
        order_id = place(api_client(create_app(env.settings)))
        started = time.monotonic()
        answers = [client.get(f"/orders/{order_id}").status_code for _ in range(30)]
        elapsed = time.monotonic() - started
        assert set(answers) <= {200, 404}, answers  # served (the projection may not show it yet): no 5xx
        assert held, "the limiter never reached the silent Redis"
        assert elapsed < 10, f"30 requests took {elapsed:.1f}s: each paid the hung Redis's timeout"
    finally:
        stop.set()
        acceptor.join()
        for conn in held:
            conn.close()
        silent.close()


def test_reads_that_wait_cannot_starve_the_server(fresh_env: Env) -> None:
    """Twenty clients ask for a version the projection never reaches (no projector runs): only a few
    of them wait (each web process keeps a thread for everything else), the others are told at
    once, and /healthz and other reads are answered before any waiting read has finished."""
    auth = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
    finished: list[str] = []
    with web_server(fresh_env, ORDERSTREAM_READ_WAIT_MS="10000", WEB_THREADS="4") as base:
        order_id = requests.post(f"{base}/orders", json=ORDER, headers=auth, timeout=5).json()["order_id"]

        def read_a_version_never_reached() -> None:
            answer = requests.get(f"{base}/orders/{order_id}?min_version=5", headers=auth, timeout=30)
            assert answer.status_code == 409
            finished.append("told at once" if "did not wait" in answer.json()["detail"] else "waited")

        readers = [threading.Thread(target=read_a_version_never_reached) for _ in range(20)]
        for reader in readers:
            reader.start()
        wait_for(lambda: finished.count("told at once") >= 14, what="the reads beyond the waiting slots to be told")
        assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
        assert requests.get(f"{base}/orders", headers=auth, timeout=30).status_code == 200
        finished.append("healthz and a list answered")
        for reader in readers:
            reader.join()
    assert 1 <= finished.count("waited") <= 2 * 3  # two web processes, three waiting slots each
    assert finished.index("healthz and a list answered") < finished.index("waited")


def test_a_read_that_need_not_wait_takes_no_waiting_slot(fresh_env: Env) -> None:
    """With no waiting slot at all, reads that the projection already satisfies still answer 200;
    only one that would have to wait is told at once."""
    client = api_client(create_app(replace(fresh_env.settings, max_waiting_reads=0)))
    with workers(fresh_env, ("relay",), ("projector",)):
        order_id = place(client)
        wait_for(lambda: client.get(f"/orders/{order_id}").status_code == 200, what="the projector")
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert client.get(f"/orders/{order_id}?min_version=1").status_code == 200
    behind = client.get(f"/orders/{order_id}?min_version=2")
    assert behind.status_code == 409 and "did not wait" in behind.json["detail"]
