"""Per-request plumbing shared by the blueprints: request ids, metadata, the app's resources."""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, request
from redis import Redis
from sqlalchemy import Engine

from app.config import Settings

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


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
        g.request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())
        correlation = request.headers.get("X-Correlation-ID", "")
        g.correlation_id = correlation if _REQUEST_ID.match(correlation) else g.request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id, correlation_id=g.correlation_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response


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


def install_input_guard(app: Flask) -> None:
    """Refuse text PostgreSQL cannot store, before it reaches a query (a 4xx, not a 500)."""
    from app.problems import problem

    @app.before_request
    def _guard() -> Response | None:
        if _unstorable(request.path) or any(_unstorable(k + v) for k, v in request.args.items(multi=True)):
            return problem(400, "the URL holds NUL characters or unpaired surrogates")
        if request.is_json:  # chunked bodies have no Content-Length: look whenever it says JSON
            try:
                body = request.get_json(silent=True)
            except RecursionError:
                return problem(400, "the JSON body is nested too deeply")
            if body is not None and _any_unstorable(body):
                return problem(422, "the body holds NUL characters or unpaired surrogates")
        return None
