"""What reaches the server before our code or beside it, as clients send it over a real socket:
chunked, malformed and slow bodies, gunicorn's own refusals, rq-dashboard's routes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
from flask import Flask

from app.entry.factory import create_app
from tests.support import Env, api_client, routes, web_server


@pytest.fixture(scope="module")
def app(env: Env) -> Flask:
    return create_app(replace(env.settings, read_wait_ms=0))


# --- bodies as they arrive: chunked, malformed, slow ----------------------------------------------------------


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


def _chunked_post(env: Env, content_type: bytes) -> bytes:
    """The head of an authenticated POST /orders whose body comes in chunks."""
    token = (env.settings.admin_token or "").encode()
    return (b"POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\nContent-Type: "
            + content_type + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")  # fmt: skip


def test_a_chunked_body_over_the_limit_is_413(server: str, env: Env) -> None:
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    for content_type, expected in ((b"application/json", 413), (b"text/plain", 415)):  # not read: refused unread
        status, headers, answer = _raw(server, _chunked_post(env, content_type) + body)
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


def test_rq_dashboards_actions_on_an_empty_queue_are_4xx(app: Flask, env: Env) -> None:
    from rq import Queue

    queue = Queue(env.settings.rq_queue, connection=env.redis)
    queue.enqueue("workers.jobs.redrive_dead_letter", 0)
    queue.empty()  # the queue is known, and holds nothing
    client = api_client(app)
    for path in (f"/rq/queue/{queue.name}/compact", f"/rq/queue/{queue.name}/queued/empty",
                 f"/rq/requeue/{queue.name}"):  # fmt: skip
        response = client.post(path)
        assert response.status_code < 500, (path, response.data[:200])


def test_a_malformed_chunked_body_is_400(server: str, env: Env) -> None:
    head = _chunked_post(env, b"application/json")
    for body in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;\x00\r\n{}\r\n0\r\n\r\n"):
        status, headers, answer = _raw(server, head + body)
        assert status == 400, (body, status, answer[:200])
        assert headers["content-type"] == "application/problem+json"


def _held(base: str, head: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(head)
    return conn


def _answer(conn: socket.socket) -> tuple[int, bytes]:
    """The status and everything the server sent until it closed the connection."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    return int(data.split(b" ", 2)[1]), data


def test_bodies_that_never_come_cannot_take_every_thread(env: Env) -> None:
    """Clients announce a body and send almost none of it: strangers are answered 401 at once and
    their connections closed; authenticated ones get 408 once the body timeout is over. Meanwhile,
    and after, the service answers (two processes of two threads: four such clients could hold
    every thread for good if nothing bounded them)."""
    auth = f"Authorization: Bearer {env.settings.admin_token}\r\n".encode()
    announce = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    with web_server(env, WEB_THREADS="2", ORDERSTREAM_BODY_TIMEOUT_MS="1000") as base:
        strangers = [_held(base, announce + b"\r\n{") for _ in range(8)]
        members = [_held(base, announce + auth + b"\r\n{") for _ in range(8)]
        assert requests.get(f"{base}/healthz", timeout=20).status_code == 200
        stranger_answers = [_answer(conn) for conn in strangers]
        member_answers = [_answer(conn) for conn in members]
        assert requests.get(f"{base}/healthz", timeout=20).status_code == 200
    assert {status for status, _ in stranger_answers} == {401}
    assert {status for status, _ in member_answers} == {408}
    assert all(b"application/problem+json" in data for _, data in member_answers)
