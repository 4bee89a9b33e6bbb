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
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

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

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String(metadata={"example": "Unprocessable Entity"})
    status = ma.fields.Integer(metadata={"example": 422})
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
            view = blp.alt_response(status, schema=ProblemSchema, description=description, content_type=PROBLEM_JSON)(
                view
            )
        return view

    return decorate


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering every HTTP error (404, 405, 413, 422, ...) as problem+json."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_RESPONSE_CONTENT_TYPE = "application/json"

    def _register_responses(self) -> None:
        """Document every error response (and the `default` one) as application/problem+json."""
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "an error, as RFC 9457 problem details", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)

    def _register_pagination_header(self) -> None:
        """X-Pagination is a JSON text; documented as a string (an object would mean key=value pairs)."""
        header = {"description": 'pagination as JSON: {"total", "total_pages", "first_page", "last_page", "page",'
                  ' "previous_page", "next_page"}', "schema": {"type": "string"}}  # fmt: skip
        self.spec.components.header("PAGINATION", header, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        if status >= 500:
            log.error("request failed", exc_info=getattr(error, "original_exception", None) or error)
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        detail = data.get("message") or _detail(status, error, errors)
        headers = dict(data.get("headers") or {})
        if status == 429:
            retry_after = getattr(error, "retry_after", None)
            headers["Retry-After"] = str(retry_after if isinstance(retry_after, int) else 1)
        if error.response is None:
            headers.update({k: v for k, v in error.get_headers() if k.lower() == "allow"})
        return problem(status, detail, headers, errors=errors, **(data.get("extensions") or {}))


def _detail(status: int, error: HTTPException, errors: Any) -> str:
    if status == 422 and errors:
        return "the request does not validate: see errors for each field"
    if status == 400 and errors:
        return "the request could not be parsed: see errors"
    if status >= 500:
        return "the server failed to handle this request; it has been logged"
    return error.description or HTTPStatus(status).description


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

    def _redis_unavailable(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc)
        return problem(503, "Redis is unavailable; retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS)})

    for redis_error in (redis.ConnectionError, redis.TimeoutError):  # admin and job endpoints need Redis
        app.register_error_handler(redis_error, _redis_unavailable)
