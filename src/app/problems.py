"""Errors as RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import flask_smorest
import marshmallow as ma
import psycopg
import sqlalchemy.exc
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, with `errors` holding field-level validation messages."""

    type = ma.fields.String(metadata={"example": "about:blank"})
    title = ma.fields.String(metadata={"example": "Unprocessable Entity"})
    status = ma.fields.Integer(metadata={"example": 422})
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict()
    request_id = ma.fields.String()


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


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering every HTTP error (404, 405, 413, 422, ...) as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        if status >= 500:
            log.error("request failed", exc_info=getattr(error, "original_exception", None) or error)
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        detail = data.get("message") or _detail(status, error, errors)
        headers = dict(data.get("headers") or {})
        if error.response is None:
            headers.update({k: v for k, v in error.get_headers() if k.lower() == "allow"})
        return problem(status, detail, headers, errors=errors)


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
