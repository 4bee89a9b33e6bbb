"""Per-request plumbing shared by the blueprints: request ids, metadata, the app's resources."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from flask import Flask, Response, current_app, g, request
from redis import Redis
from sqlalchemy import Engine

from app.platform.config import Settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


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


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
