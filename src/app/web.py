"""Per-request plumbing shared by the blueprints: request ids, metadata, the app's resources."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, request
from redis import Redis
from sqlalchemy import Engine
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from app.config import Settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
MAX_NUMBER_DIGITS = 40  # more than any field takes; Python refuses past 4,300 digits anyway
NO_BODY = object()


def engine() -> Engine:
    """The process's SQLAlchemy engine."""
    return current_app.extensions["orderstream"]["engine"]


def settings() -> Settings:
    """The process's settings."""
    return current_app.extensions["orderstream"]["settings"]


def streams_redis() -> Any:
    """The Redis (or Redis Cluster) that carries the event streams."""
    return current_app.extensions["orderstream"]["streams"]


def redis_client() -> Redis:
    """The process's Redis client."""
    return current_app.extensions["orderstream"]["redis"]


@contextmanager
def waiting_slot() -> Iterator[bool]:
    """One of the process's few slots for a request that waits (True), or False when all are taken."""
    slots = current_app.extensions["orderstream"]["waiting_reads"]
    taken = slots.acquire(blocking=False)
    try:
        yield taken
    finally:
        if taken:
            slots.release()


def event_metadata() -> dict[str, Any]:
    """Metadata recorded with every event a request appends."""
    return {
        "request_id": g.request_id,
        "correlation_id": g.correlation_id,
        "causation_id": None,
        "actor": g.get("actor", "anonymous"),
    }


def request_ids() -> dict[str, str]:
    """This request's ids, to hand on to what it causes (events' metadata, rq jobs)."""
    return {"request_id": g.request_id, "correlation_id": g.correlation_id}


def install_request_ids(app: Flask) -> None:
    """Take X-Request-ID (or make one), use it as correlation id, and echo it on every response."""

    @app.before_request
    def _assign() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        correlation = request.headers.get("X-Correlation-ID", "")
        g.correlation_id = correlation if _REQUEST_ID.fullmatch(correlation) else g.request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id, correlation_id=g.correlation_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return int(digits)


def _real(digits: str) -> float:
    value = float(digits)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number is beyond what a 64-bit float holds")
    return value


def _body() -> bytes:
    """The body, at most MAX_CONTENT_LENGTH bytes (413 beyond).

    Werkzeug enforces the limit on a chunked body by reading no further than it, silently: a body
    cut there would then fail to parse (a 400). So when a chunked body fills the limit, one more
    byte is asked of the server's stream: if there is one, the body was too large.
    """
    data = request.get_data(cache=True)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    chunked_at_limit = request.content_length is None and limit is not None and len(data) >= limit
    if chunked_at_limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    return data


def request_json() -> Any:
    """The request's JSON body, parsed once per request, strictly; NO_BODY when there is none.

    Every reader of the body (the input guard, the argument parser, idempotency fingerprints) goes
    through here. Reading the body enforces MAX_CONTENT_LENGTH (413), chunked bodies included.
    Anything that is not plain JSON is a 400: bad UTF-8, bad syntax, nesting too deep, NaN or
    Infinity, numbers beyond what converts.
    """
    if "json_body" not in g:
        data = _body()
        if not data.strip():
            g.json_body = NO_BODY
        else:
            try:
                g.json_body = json.loads(
                    data.decode("utf-8"), parse_constant=_refuse_constant, parse_int=_integer, parse_float=_real
                )
            except UnicodeDecodeError as exc:
                raise BadRequest("the body is not UTF-8") from exc
            except RecursionError as exc:
                raise BadRequest("the JSON body is nested too deeply") from exc
            except ValueError as exc:
                raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from exc
    return g.json_body


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(text: str) -> bool:
    """NUL and unpaired surrogates: valid in JSON and URLs, impossible to store in PostgreSQL text."""
    return _UNSTORABLE.search(text) is not None


def _any_unstorable(value: Any) -> bool:
    """Walks the parsed body without recursion (a deeply nested body must not exhaust the stack)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and _unstorable(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def install_input_guard(app: Flask, api_blueprints: frozenset[str]) -> None:
    """Judge the request's URL and body once, after authentication and before any view: text
    PostgreSQL cannot store is refused (a 4xx, not a 500), a command's body must be JSON (or
    absent), and JSON bodies are parsed here, strictly, for every reader after. Only authenticated
    requests have their bodies looked at."""
    from app.problems import problem

    @app.before_request
    def _guard() -> Response | None:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit is not None and (request.content_length or 0) > limit:  # declared: refused unread
            raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
        if _unstorable(request.path) or any(_unstorable(k + v) for k, v in request.args.items(multi=True)):
            return problem(400, "the URL holds NUL characters or unpaired surrogates")
        if "principal" not in g:  # public pages take no body: none is judged
            return None
        if request.is_json:  # chunked bodies have no Content-Length: look whenever it says JSON
            body = request_json()
            if body is not NO_BODY and _any_unstorable(body):
                return problem(422, "the body holds NUL characters or unpaired surrogates")
        elif request.method in UNSAFE_METHODS and request.blueprint in api_blueprints and _has_body():
            raise UnsupportedMediaType("send the command's body as application/json")
        return None


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
