"""Bad input, by class: whatever a client sends gets a clear 4xx and changes nothing, never a 500.

Each test walks a class of input across every place it can arrive (every route, every header we
read, every field of every body), so a new route or field is covered as soon as it exists.
"""

from __future__ import annotations

import json
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

from app.entry.factory import create_app
from app.platform.validation import IDENTIFIER_PATTERN, FullMatch
from commands.schemas import SKU_PATTERN
from tests.support import (
    ORDER,
    VALID_BODIES,
    Env,
    api_client,
    events_of,
    our_routes,
    place,
    routes,
    shown,
    wait_for,
    workers,
)

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
    refusals = [('"7", "8"', "at version 1, not 7, 8"), ('"\u00b2"', "at version 1, not no version"),
                ('W/"1"', "compares strongly"), ('"abc"', "no version of it"), ('"01"', "no version of it"),
                ('"+1"', "no version of it")]  # fmt: skip
    for header, detail in refusals:
        refused = client.post(f"/orders/{order_id}/delivery", headers={"If-Match": header})
        assert refused.status_code == 412 and detail in refused.json["detail"], (header, refused.json)
    for malformed in ("1", "abc", '"1', "W/1", '"1" "2"', '" 1"'):
        refused = client.post(f"/orders/{order_id}/delivery", headers={"If-Match": malformed})
        assert refused.status_code == 400, malformed
        assert "entity tags" in json.dumps(refused.json["errors"]), malformed
    assert events_of(env, order_id) == ["OrderCreated"]


def test_conditional_reads_compare_lists_and_weak_tags_as_rfc_9110_says(fresh_env: Env) -> None:
    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",)):
        order_id = place(client)
        shown(client, order_id, 1)  # polling: the projector process takes a moment to start
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


@pytest.mark.parametrize("number", ["1_0", " 1", "1 ", "1\n", "+1", "\u0661", "\uff11", "1.0", "0x1", "1e1"])
def test_whole_numbers_in_a_url_are_ascii_digits_only(app: Flask, order_id: str, number: str) -> None:
    client = api_client(app)
    encoded = quote(number, safe="")
    for path in (f"/events?limit={encoded}", f"/events?after={encoded}", f"/orders?page={encoded}",
                 f"/orders?page_size={encoded}", f"/orders/{order_id}?min_version={encoded}",
                 f"/orders/{order_id}/history?version={encoded}", f"/admin/dead-letters?page={encoded}"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 422, (path, response.status_code)
    assert client.get(f"/admin/dead-letters/{encoded}").status_code == 404


def test_a_query_parameter_an_operation_does_not_take_is_refused(app: Flask, env: Env, order_id: str) -> None:
    client = api_client(app)
    before = env.scalar("SELECT count(*) FROM events")
    for route in our_routes(app, order_id):
        response = client.open(
            route.path + "?min_verison=3", method=route.method, json=VALID_BODIES.get(route.endpoint)
        )
        assert response.status_code == 422, (route, response.status_code)
        assert "min_verison" in response.json["errors"]["query"]
    assert env.scalar("SELECT count(*) FROM events") == before
    assert client.get(f"/orders/{order_id}?min_version=1").status_code in (200, 409)  # what it takes, it takes
    assert client.get("/orders?status=paid&page=1&page_size=5").status_code == 200


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
