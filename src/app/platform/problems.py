"""Errors as RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

import flask_smorest
import marshmallow as ma
import psycopg
import redis
import sqlalchemy.exc
from flask import Flask, Response, json

PROBLEM_JSON = "application/problem+json"
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, with `errors` holding field-level validation messages.

    Other members may appear (RFC 9457 extensions), e.g. wanted_version and projected_version on a
    read that asked for a version the projection has not reached yet.
    """

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict()
    request_id = ma.fields.String()
    wanted_version = ma.fields.Integer()
    projected_version = ma.fields.Integer()


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extensions: Any) -> Response:
    """A problem+json response; `extensions` become extra members of the problem object."""
    from flask import g

    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    body.update({k: v for k, v in extensions.items() if v is not None})
    if "request_id" in g:
        body["request_id"] = g.request_id
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def problem_responses(blp: flask_smorest.Blueprint, statuses: dict[int, str]) -> Callable[[F], F]:
    """Document problem+json answers for these statuses on an endpoint."""

    def decorate(view: F) -> F:
        for status, description in statuses.items():
            document = blp.alt_response(
                status,
                schema=ProblemSchema,
                description=description,
                content_type=PROBLEM_JSON,
                example=example_problem(status, description),
            )
            view = document(view)
        return view

    return decorate


MAX_ERRORS = 20  # field errors reported in one problem; more are counted, not listed


def example_problem(status: int, detail: str | None = None) -> dict[str, Any]:
    """An example problem document for a status (OpenAPI examples show the status they document)."""
    phrase = HTTPStatus(status).phrase
    return {"type": "about:blank", "title": phrase, "status": status, "detail": detail or phrase.lower()}


def cap_errors(errors: Any, limit: int = MAX_ERRORS) -> Any:
    """At most `limit` field messages, in their nesting; `_truncated` says how many more there were."""
    if not isinstance(errors, dict):
        return errors
    budget = [limit]
    dropped = [0]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            kept: dict[Any, Any] = {}
            for key, value in node.items():
                pruned = walk(value)
                if pruned not in ({}, []):
                    kept[key] = pruned
            return kept
        messages = node if isinstance(node, list) else [node]
        taken = messages[: max(budget[0], 0)]
        budget[0] -= len(taken)
        dropped[0] += len(messages) - len(taken)
        return taken

    capped = walk(errors)
    if dropped[0]:
        capped["_truncated"] = [f"{dropped[0]} more errors not shown"]
    return capped


RETRY_AFTER_SECONDS = 5


def install_unavailable(app: Flask) -> None:
    """A lost database answers 503 with Retry-After: the command did not happen, try again later."""

    def _unavailable(exc: Exception) -> Response:
        log.warning("database unavailable: %s", exc)
        return problem(
            503,
            "the database is unavailable; nothing was changed, retry shortly",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for error in (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, psycopg.OperationalError):
        app.register_error_handler(error, _unavailable)

    def _busy(exc: Exception) -> Response:
        log.warning("no database connection free in time: %s", exc)
        return problem(
            503,
            "the database is busy (no connection free in time); nothing was changed, retry shortly",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    app.register_error_handler(sqlalchemy.exc.TimeoutError, _busy)  # the pool was exhausted

    def _redis_unavailable(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc)
        return problem(503, "Redis is unavailable; retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS)})

    for redis_error in (redis.ConnectionError, redis.TimeoutError):  # admin and job endpoints need Redis
        app.register_error_handler(redis_error, _redis_unavailable)
