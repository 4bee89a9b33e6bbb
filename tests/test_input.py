"""Bad input, by class: whatever a client sends gets a clear 4xx and changes nothing, never a 500.

Each test walks a class of input across every place it can arrive (every route, every header we
read, every field of every body), so a new route or field is covered as soon as it exists.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import marshmallow as ma
import pytest
import requests
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.factory import create_app
from app.validation import IDENTIFIER_PATTERN, FullMatch
from commands.schemas import SKU_PATTERN
from tests.routes import routes
from tests.support import Env, api_client, wait_for, web_server, workers
from tests.test_api import ORDER, events_of, place

VALID_BODIES: dict[str, dict[str, Any]] = {
    "order-commands.Orders": ORDER,
    "order-commands.Items": {"sku": "B", "quantity": 1, "unit_price": "1.00"},
    "order-commands.Payments": {"amount": "19.98", "reference": "psp"},
    "order-commands.Shipments": {"carrier": "DHL", "tracking_number": "T"},
    "order-commands.Cancellation": {"reason": "r"},
    "admin.Discard": {"reason": "r"},
}
WEIRD_NUMBERS = ["9" * 5000, "-" + "9" * 5000, "1e999", "-1e999", "NaN", "Infinity", "1" * 41, "1.5e308", "0.0",
                 "-0", "12345678901234567890"]  # fmt: skip
WEIRD_HEADER_VALUES = ['"\u00b2"', '"\u00d9\u00a1"', "\u00b2", "W/", 'W/"1"', '"1", W/"2"', '*, "1"', '"1"' * 400,
                       "", " ", ",", ",,", '"', '""', '"1",', '"a"b"', "\u00ff" * 300, "1", "-1",
                       "99999999999999999999", "\t*\t", "NaN"]  # fmt: skip
HEADERS_WE_READ = ["If-Match", "If-None-Match", "Idempotency-Key", "X-Request-ID", "X-Correlation-ID",
                   "Sec-Fetch-Site", "Origin", "Referer", "Content-Type", "Authorization"]  # fmt: skip


@pytest.fixture(scope="module")
def app(env: Env) -> Flask:
    return create_app(replace(env.settings, read_wait_ms=0))


@pytest.fixture(scope="module")
def order_id(app: Flask) -> str:
    return place(api_client(app))


def our_routes(app: Flask, order_id: str) -> Iterator[Any]:
    return (r for r in routes(app, {"order_id": order_id, "sku": "A"}) if r.ours)


# --- 8. headers -----------------------------------------------------------------------------------------------


def test_every_header_we_read_answers_4xx_or_success_to_any_value(app: Flask, env: Env, order_id: str) -> None:
    client = api_client(app)
    before = env.scalar("SELECT count(*) FROM events")
    seen = set()
    for route in our_routes(app, order_id):
        for header in HEADERS_WE_READ:
            for value in WEIRD_HEADER_VALUES:
                response = client.open(route.path, method=route.method, headers={header: value},
                                       json=VALID_BODIES.get(route.endpoint))  # fmt: skip
                assert response.status_code < 500, (route, header, value, response.data[:300])
                seen.add(response.status_code)
                if response.status_code >= 400:
                    assert response.content_type == "application/problem+json", (route, header, value)
    assert {400, 401, 412} <= seen
    assert env.scalar("SELECT count(*) FROM events") > before  # valid commands went through meanwhile


def test_if_match_matches_when_any_tag_of_its_list_does(app: Flask, env: Env) -> None:
    client = api_client(app)
    for header in ('"7", "1"', '"1", "7"', ' "9" , "8","1" ', '"1", W/"2"', '"x", "1"', ', "1" ,,'):
        order_id = place(client)
        response = client.post(f"/orders/{order_id}/items", json=VALID_BODIES["order-commands.Items"],
                               headers={"If-Match": header})  # fmt: skip
        assert response.status_code == 200, (header, response.json)
    order_id = place(client)
    for header, detail in (('"7", "8"', "at version 1, not 7, 8"), ('"\u00b2"', "at version 1, not no version"),
                           ('W/"1"', "compares strongly"), ('"abc"', "not no version of it")):  # fmt: skip
        refused = client.post(f"/orders/{order_id}/delivery", headers={"If-Match": header})
        assert refused.status_code == 412 and detail in refused.json["detail"], (header, refused.json)
    for malformed in ("1", "abc", '"1', "W/1", '"1" "2"'):
        refused = client.post(f"/orders/{order_id}/delivery", headers={"If-Match": malformed})
        assert refused.status_code == 400, malformed
        assert "entity tags" in json.dumps(refused.json["errors"]), malformed
    assert events_of(env, order_id) == ["OrderCreated"]


def test_conditional_reads_compare_lists_and_weak_tags_as_rfc_9110_says(fresh_env: Env) -> None:
    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",)):
        order_id = place(client)
        assert client.get(f"/orders/{order_id}?min_version=1").status_code == 200
    for header in ('"7", "1"', 'W/"1"', '"3", W/"1"', "*"):
        assert client.get(f"/orders/{order_id}", headers={"If-None-Match": header}).status_code == 304, header
    for header in ('"7", "1"', '"1", "7"', "*"):
        assert client.get(f"/orders/{order_id}", headers={"If-Match": header}).status_code == 200, header
    assert client.get(f"/orders/{order_id}", headers={"If-Match": 'W/"1"'}).status_code == 412  # strong only
    for malformed in ("1", '"1', "W/"):
        for header in ("If-Match", "If-None-Match"):
            assert client.get(f"/orders/{order_id}", headers={header: malformed}).status_code == 400, (
                header,
                malformed,
            )


# --- 9. numbers ------------------------------------------------------------------------------------------------


def _leaves(body: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(body, dict):
        for key, value in body.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _with_raw(body: Any, path: tuple[Any, ...], raw: str) -> str:
    """The body as JSON text with the value at `path` replaced by the raw token `raw`."""
    marker = f"__raw_{uuid.uuid4().hex}__"
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', raw)


def test_every_number_anywhere_in_a_body_is_a_4xx(app: Flask, env: Env, order_id: str) -> None:
    client = api_client(app)
    before = env.scalar("SELECT count(*) FROM events")
    for route in our_routes(app, order_id):
        body = VALID_BODIES.get(route.endpoint)
        if route.method == "GET" or body is None:
            continue
        places = [*_leaves(body), ("unexpected",), ("nested", "deep")]
        for where in places:
            for number in WEIRD_NUMBERS:
                base = {**body, "nested": {"deep": 1}} if where[0] == "nested" else body
                text = _with_raw(base, where, number) if where[0] in base else _with_raw({**base, where[0]: 0},
                                                                                         where, number)  # fmt: skip
                response = client.open(route.path, method=route.method, data=text, content_type="application/json")
                assert response.status_code in (400, 404, 409, 422), (route, where, number[:20], response.data[:200])
    assert env.scalar("SELECT count(*) FROM events") == before


def test_every_number_in_a_url_is_a_4xx(app: Flask, order_id: str) -> None:
    client = api_client(app)
    huge = "9" * 4000
    for route in routes(app, {"order_id": order_id, "letter_id": huge, "instance_number": huge}):
        for query in ("min_version", "page", "page_size", "after", "limit", "version", "at", "from", "to"):
            response = client.open(f"{route.path}?{query}={huge}", method=route.method)
            assert response.status_code < 500, (route, query)


# --- 10. patterns ----------------------------------------------------------------------------------------------


def _argument_schemas(app: Flask) -> Iterator[ma.Schema]:
    """Every marshmallow schema the API parses input with (bodies, queries, headers)."""
    for view in app.view_functions.values():
        view_class = getattr(view, "view_class", None)
        methods = [getattr(view_class, m) for m in ("get", "post", "put", "patch", "delete") if view_class and
                   hasattr(view_class, m)]  # fmt: skip
        for method in methods:
            for argument in getattr(method, "_apidoc", {}).get("arguments", {}).get("parameters", []):
                schema = argument["schema"]
                yield schema if isinstance(schema, ma.Schema) else schema()


def _string_fields(schema: ma.Schema) -> Iterator[tuple[str, ma.fields.Field]]:  # type: ignore[type-arg]
    for name, field in schema.fields.items():
        inner = field.inner if isinstance(field, ma.fields.List) else field
        if isinstance(inner, ma.fields.Nested):
            yield from _string_fields(inner.schema)
        else:
            yield name, inner


def test_no_pattern_in_any_schema_accepts_a_trailing_newline(app: Flask) -> None:
    checked = 0
    for schema in _argument_schemas(app):
        for name, field in _string_fields(schema):
            for validator in field.validators:
                if isinstance(validator, ma.validate.Regexp):
                    assert isinstance(validator, FullMatch), f"{type(schema).__name__}.{name} uses a bare Regexp"
                    example = str(field.metadata.get("example", "A1"))
                    validator(example)
                    with pytest.raises(ma.ValidationError):
                        validator(example + "\n")
                    checked += 1
    assert checked >= 3


def test_a_sku_with_a_trailing_newline_is_not_a_second_line(app: Flask, env: Env) -> None:
    client = api_client(app)
    refused = client.post("/orders", json={**ORDER, "items": [ORDER["items"][0], {**ORDER["items"][0], "sku": "A\n"}]})
    assert refused.status_code == 422
    order_id = place(client)
    for body in ({"sku": "A\n", "quantity": 1, "unit_price": "9.99"}, {"sku": "B", "quantity": 1, "unit_price": "1\n"}):
        assert client.post(f"/orders/{order_id}/items", json=body).status_code == 422
    assert client.post(f"/orders/{order_id}/payments", json={"amount": "19.98\n", "reference": "r"}).status_code == 422
    assert client.post("/orders", json={**ORDER, "customer_id": "c-1\n"}).status_code == 422
    assert events_of(env, order_id) == ["OrderCreated"]


# --- 11. identifiers we accept must be addressable ------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customer_id=st.from_regex(IDENTIFIER_PATTERN, fullmatch=True), sku=st.from_regex(SKU_PATTERN, fullmatch=True))
def test_every_identifier_we_accept_routes_back_to_itself(app: Flask, customer_id: str, sku: str) -> None:
    adapter = app.url_map.bind("localhost")
    order_id = str(uuid.uuid4())
    for path, endpoint, variable, value in (
        (f"/customers/{quote(customer_id, safe='')}/stats", "stats.CustomerStats", "customer_id", customer_id),
        (f"/orders/{order_id}/items/{quote(sku, safe='')}", "order-commands.Item", "sku", sku),
    ):
        method = "DELETE" if endpoint == "order-commands.Item" else "GET"
        matched, args = adapter.match(requests.utils.unquote(path), method=method)
        assert (matched, args[variable]) == (endpoint, value)


@pytest.mark.parametrize("customer_id", ["a/b", "..", ".hidden", "a b", "a?b", "a#b", "a%2Fb", "ä"])
def test_identifiers_that_no_url_could_reach_are_refused(app: Flask, customer_id: str) -> None:
    response = api_client(app).post("/orders", json={**ORDER, "customer_id": customer_id})
    assert response.status_code == 422 and "customer_id" in response.json["errors"]["json"]


def test_a_customer_placed_with_any_allowed_character_has_reachable_stats(fresh_env: Env) -> None:
    client = api_client(create_app(fresh_env.settings))
    customer = "Cust.omer_1:eu@shop-7"
    with workers(fresh_env, ("relay",), ("projector", "--projection", "sales_stats")):
        place(client, {**ORDER, "customer_id": customer})
        stats = wait_for(lambda: (r := client.get(f"/customers/{customer}/stats")).status_code == 200 and r,
                         what="the customer's stats")  # fmt: skip
    assert stats.json["customer_id"] == customer and stats.json["orders"] == 1


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


# --- 14, 15: what reaches the server before our code: chunked bodies, gunicorn's own refusals -------------------


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[str]:
    with web_server(env) as base:
        yield base


def _raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_chunked_body_over_the_limit_is_413(server: str, env: Env) -> None:
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    for content_type, expected in ((b"application/json", 413), (b"text/plain", 415)):  # not read: refused unread
        head = (
            b"POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + (env.settings.admin_token or "").encode()
            + b"\r\nContent-Type: "
            + content_type
            + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        status, headers, answer = _raw(server, head + body)
        assert status == expected, (content_type, status, answer[:200])
        assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /orders HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(120)) + b"\r\n", 431),
        (b"GET /orders HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /orders HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n", 400),
    ],
    ids=["request-line", "header-count", "header-size", "request-line-garbage", "header-name"],
)
def test_what_gunicorn_refuses_before_the_app_is_problem_json(server: str, request_bytes: bytes, status: int) -> None:
    answered, headers, body = _raw(server, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == status


def test_rq_dashboards_routes_answer_4xx_to_any_id_or_path(app: Flask) -> None:
    client = api_client(app)
    bad = ["nope", "0", "-1", "99999999999", "9" * 300, "%00", "..", "a b", "\u00e9", "1.5", "asc", "failed"]
    checked = 0
    for value in bad:
        values = {name: value for name in ("instance_number", "job_id", "queue_name", "registry_name", "per_page",
                                           "order", "page", "filename")}  # fmt: skip
        for route in routes(app, values):
            if not route.endpoint.startswith("rq_dashboard."):
                continue
            response = client.open(route.path, method=route.method)
            assert response.status_code < 500, (route, value, response.data[:300])
            if (response.status_code >= 400 and response.status_code != 404) or "json" in route.path:
                assert response.status_code < 400 or response.content_type == "application/problem+json", route
            checked += 1
    assert checked > 100
    assert client.get("/rq/0/view/job/no-such-job").status_code == 404
    assert client.get("/rq/7/view/workers").status_code == 404
    assert client.get("/rq/0/data/jobs/q/bogus/8/asc/1.json").status_code == 404
    assert client.get("/rq/0/data/jobs/q/failed/0/asc/1.json").status_code == 404
    assert client.post("/rq/job/no-such-job/requeue").status_code == 404


# --- 21. an error subclass nobody listed ----------------------------------------------------------------------------


def test_a_subclass_of_any_known_refusal_answers_as_its_parent() -> None:
    from commands.views import STATUS_OF, status_of

    for known, status in STATUS_OF.items():
        unforeseen = type(f"Unforeseen{known.__name__}", (known,), {})
        assert status_of(unforeseen("new case")) == status, known


def test_every_domain_refusal_has_a_client_error_status() -> None:
    """Every DomainError subclass has a status (through its ancestors): none can become a 500."""
    from commands import errors
    from commands.views import status_of

    for error in vars(errors).values():
        if isinstance(error, type) and issubclass(error, errors.DomainError) and error is not errors.DomainError:
            assert 400 <= status_of(error("x")) < 500, error
