"""Security, as an outside tester probes it: every route, every way in.

Classes covered: nothing is judged before authentication; nothing changes state cross-site; guessing
tokens is limited per address; names the system uses cannot be taken; secrets too short are refused.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from app.entry.factory import create_app
from app.platform.config import InsecureAdminToken, Settings
from app.platform.tokens import InvalidTokenName, check_token_name, create_token
from tests.support import BIN, ORDER, Env, api_client, place, routes

JUNK_BODIES: list[dict[str, Any]] = [
    {"data": "{not json", "content_type": "application/json"},
    {"data": '{"a": 1' + "9" * 5000 + "}", "content_type": "application/json"},
    {"data": '{"customer_id": "a\\u0000b"}', "content_type": "application/json"},
    {"data": "<xml/>", "content_type": "text/xml"},
    {"data": "x" * (70 * 1024), "content_type": "application/json"},
]
JUNK_HEADERS = {"If-Match": "garbage", "If-None-Match": '"unterminated', "Idempotency-Key": "\x7f" * 300}


@pytest.fixture(scope="module")
def app(env: Env) -> Flask:
    """This module's app: these tests fail authentication on purpose, far more often than the
    per-address limit allows (its own test sets a low one)."""
    return create_app(replace(env.settings, auth_failure_limit="1000000 per minute"))


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()}


@pytest.mark.parametrize("junk", JUNK_BODIES, ids=["bad-json", "huge-number", "nul", "xml", "oversized"])
def test_a_stranger_gets_401_on_every_route_whatever_it_sends(app: Flask, junk: dict[str, Any]) -> None:
    """No body, parameter, header or route is judged before authentication: 401, never 400/413/415/422/404."""
    stranger = app.test_client()
    checked = 0
    for route in routes(app):
        if route.public:
            continue
        for method, credentials in ((route.method, {}), ("OPTIONS", {}), (route.method, {"Authorization": "Bearer x"})):
            response = stranger.open(
                route.path + "?min_version=x&page=-1&status=nope&after=-5&nul=%00",
                method=method,
                headers={**JUNK_HEADERS, **credentials},
                **junk,
            )
            assert response.status_code == 401, (route, method, junk, response.status_code, response.data[:300])
            assert response.content_type == "application/problem+json" and "Allow" not in response.headers
            checked += 1
    assert checked > 90
    assert stranger.post("/no/such/route", data="{", content_type="application/json").status_code == 401


def test_a_role_that_may_not_gets_403_before_its_request_is_judged(app: Flask, env: Env) -> None:
    reader = api_client(app, create_token(env.engine, f"reader-{uuid.uuid4().hex[:6]}", "reader"))
    for route in routes(app):
        if route.public or (route.method == "GET" and not route.path.startswith(("/admin", "/rq"))):
            continue
        response = reader.open(route.path, method=route.method, data="{bad", content_type="application/json")
        assert response.status_code == 403, (route, response.status_code)


# --- cross-site requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://127.0.0.1:9/attack.html"},
    ],
)
def test_no_state_changing_request_is_taken_from_another_site(app: Flask, env: Env, headers: dict[str, str]) -> None:
    before = env.scalar("SELECT count(*) FROM events")
    client = api_client(app)
    for route in routes(app):
        if route.method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.open(route.path, method=route.method, json=ORDER, headers=headers)
            assert response.status_code == 403, (route, headers, response.status_code)
            assert "cross-site" in response.json["detail"]
    assert env.scalar("SELECT count(*) FROM events") == before
    assert client.get("/orders", headers=headers).status_code == 200  # reads with a bearer token are harmless


def test_the_browser_pages_refuse_every_cross_site_request_even_reads(app: Flask, env: Env) -> None:
    """rq-dashboard has state-changing GET routes of its own: its pages take nothing from other sites."""
    token = env.settings.admin_token or ""
    browser = app.test_client()
    for path in ("/rq/", "/rq/0/view/workers", "/rq/requeue/some-queue", "/admin"):
        refused = browser.get(path, headers={**basic(token), "Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403, path
    for site in ("same-origin", "none"):  # from its own pages, or typed in the address bar
        assert browser.get("/rq/", headers={**basic(token), "Sec-Fetch-Site": site}).status_code == 200
        assert browser.get("/admin", headers={**basic(token), "Sec-Fetch-Site": site}).status_code == 200
    same_origin = browser.get("/admin", headers={**basic(token), "Origin": "http://localhost"})
    assert same_origin.status_code == 200


def test_http_basic_is_accepted_only_by_the_browser_pages(app: Flask, env: Env) -> None:
    browser = app.test_client()
    token = env.settings.admin_token or ""
    for method, path in (("GET", "/orders"), ("POST", "/orders"), ("GET", "/admin/relay"),
                         ("POST", "/admin/projections/order_summaries/rebuild")):  # fmt: skip
        response = browser.open(path, method=method, json=ORDER, headers=basic(token))
        assert response.status_code == 401, path
        assert "Basic is accepted only by the admin page and /rq" in response.json["detail"]
    assert browser.get("/rq/", headers=basic(token)).status_code == 200


def test_rq_dashboards_requeue_all_takes_post_only(app: Flask, env: Env) -> None:
    from rq import Queue

    Queue(env.settings.rq_queue, connection=env.redis).enqueue("workers.jobs.redrive_dead_letter", 0)
    client = api_client(app)
    response = client.get(f"/rq/requeue/{env.settings.rq_queue}")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert client.post(f"/rq/requeue/{env.settings.rq_queue}").json == {"status": "OK", "count": 0}


def test_html_pages_cannot_be_framed_by_another_site(app: Flask, env: Env) -> None:
    for path in ("/docs", "/admin", "/rq/"):
        response = app.test_client().get(path, headers=basic(env.settings.admin_token or ""))
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


# --- guessing tokens ------------------------------------------------------------------------------------------


def test_failed_authentications_are_limited_per_address_without_a_database_lookup(env: Env) -> None:
    settings = replace(env.settings, auth_failure_limit="3 per minute", key_prefix=f"{env.settings.key_prefix}:af")
    app = create_app(settings)
    lookups: list[str] = []
    engine = app.extensions["orderstream"]["engine"]
    sqlalchemy.event.listen(
        engine, "before_cursor_execute", lambda *args: lookups.append(args[2]) if "api_tokens" in args[2] else None
    )
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    answers = [guesser.get("/orders", headers={"Authorization": f"Bearer guess-{n}"}) for n in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert answers[3].content_type == "application/problem+json"
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
    assert len(lookups) == 3, "a limited address must not cost a database lookup"
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    assert other.get("/orders", headers={"Authorization": "Bearer guess"}).status_code == 401  # its own budget
    admin = api_client(app)
    admin.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    assert admin.get("/orders").status_code == 200  # a known token is not a guess...
    writer_token = create_token(engine, f"w-{uuid.uuid4().hex[:6]}", "writer")
    assert api_client(app, writer_token).get("/orders").status_code == 200  # (seen from another address)
    writer = api_client(app, writer_token)
    writer.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    assert writer.get("/orders").status_code == 200  # ...nor is a token seen valid moments ago
    v6 = [app.test_client() for _ in range(2)]
    v6[0].environ_base["REMOTE_ADDR"], v6[1].environ_base["REMOTE_ADDR"] = "2001:db8::1", "2001:db8::ffff"
    assert [v6[n % 2].get("/orders", headers={"Authorization": "Bearer g"}).status_code for n in range(4)] == [
        401, 401, 401, 429]  # one /64: one budget  # fmt: skip


def test_missing_credentials_are_not_counted_as_failures(env: Env) -> None:
    settings = replace(env.settings, auth_failure_limit="2 per minute", key_prefix=f"{env.settings.key_prefix}:mc")
    browser = create_app(settings).test_client()
    assert [browser.get("/rq/").status_code for _ in range(5)] == [401] * 5  # the challenge a browser answers


def test_a_short_or_uniform_admin_token_is_refused_at_start_up(env: Env) -> None:
    for weak in ("short", "a" * 64, "abcabcabcabcabcabcabcabcabcabcabcabc", "0123456789" * 4,
                 "passwordpasswordpassword12345678"):  # fmt: skip
        with pytest.raises(InsecureAdminToken, match=r"at least 32 characters|predictable"):
            Settings.from_env(
                {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "ORDERSTREAM_ADMIN_TOKEN": weak}
            )
    run = subprocess.run([str(BIN / "orderstream"), "run"], env=env.process_env(ORDERSTREAM_ADMIN_TOKEN="hunter2"),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode != 0
    assert "ORDERSTREAM_ADMIN_TOKEN is 7 characters" in run.stderr and "secrets.token_urlsafe" in run.stderr


# --- names the system uses --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["env-admin", "ENV-ADMIN", "env-anything", "anonymous", "system", "orderstream-relay",
                                  "with space", "", "x" * 65, "a/b", "émile"])  # fmt: skip
def test_reserved_and_malformed_token_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidTokenName):
        check_token_name(name)


def test_the_cli_refuses_a_reserved_token_name(env: Env) -> None:
    created = subprocess.run([str(BIN / "orderstream"), "tokens", "create", "env-admin", "--role", "admin"],
                             env=env.process_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert created.returncode != 0 and "reserved" in created.stderr
    assert env.scalar("SELECT count(*) FROM api_tokens WHERE name = 'env-admin'") == 0


def test_a_token_stored_under_a_reserved_name_before_names_were_checked_is_refused(app: Flask, env: Env) -> None:
    from app.platform.tokens import hash_token

    token = f"os_{uuid.uuid4().hex}"
    with env.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("INSERT INTO api_tokens (name, role, token_hash) VALUES ('env-admin', 'writer', :h)"),
            {"h": hash_token(token)},
        )
    assert api_client(app, token).get("/orders").status_code == 401


def test_keys_and_rate_limits_belong_to_the_principal_not_its_display_name(env: Env) -> None:
    """A token and the environment's admin never share idempotency keys or a rate-limit bucket."""
    settings = replace(env.settings, rate_limit="2 per minute", key_prefix=f"{env.settings.key_prefix}:pr")
    app = create_app(settings)
    named = api_client(app, create_token(env.engine, f"envy-{uuid.uuid4().hex[:6]}", "admin"))
    admin = api_client(app)
    mine = named.post("/orders", json=ORDER, headers={"Idempotency-Key": "shared-key"})
    theirs = admin.post("/orders", json=ORDER, headers={"Idempotency-Key": "shared-key"})
    assert mine.json["order_id"] != theirs.json["order_id"]
    assert [named.get("/orders").status_code for _ in range(2)] == [200, 429]  # its budget of two is spent...
    assert [admin.get("/orders").status_code for _ in range(2)] == [200, 429]  # ...and the admin's counted apart
    stored = {row["principal"] for row in env.rows("SELECT principal FROM idempotency_keys WHERE key = 'shared-key'")}
    assert stored == {"env:admin", f"token:{_name(env, mine.json['order_id'])}"}


def _name(env: Env, order_id: str) -> str:
    return str(env.scalar("SELECT metadata->>'actor' FROM events WHERE stream_id = :s", s=order_id))


def test_the_actor_recorded_for_the_environments_admin_is_its_reserved_name(client: Any, env: Env) -> None:
    order_id = place(client)
    assert _name(env, order_id) == "env-admin"
