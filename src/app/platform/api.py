"""flask-smorest as this service uses it: every error answered and documented as problem+json,
parameters parsed strictly (app/platform/parameters.py), and the headers every operation accepts documented
on each."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Response, request
from flask_smorest.exceptions import NotModified
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import BadRequest, HTTPException

from app.platform.conditions import parse_entity_tags
from app.platform.parameters import Parser
from app.platform.problems import PROBLEM_JSON, ProblemSchema, cap_errors, example_problem, log, problem

# Headers every operation reads (app/platform/web.py), documented on each so that clients can send them.
GLOBAL_HEADERS = {
    "X_REQUEST_ID": {
        "in": "header",
        "name": "X-Request-ID",
        "required": False,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
        "description": "your id for this request: echoed back, logged, recorded in the events it appends "
        "(one is made up when absent or malformed)",
    },
    "X_CORRELATION_ID": {
        "in": "header",
        "name": "X-Correlation-ID",
        "required": False,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
        "description": "the id of the larger piece of work this request belongs to (defaults to X-Request-ID)",
    },
}


class ResponseSchema(ma.Schema):
    """A response document. It may grow members in later versions, so its OpenAPI schema does not
    forbid unknown ones (clients generated from it must ignore what they do not know)."""

    class Meta:
        unknown = ma.EXCLUDE


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with our parser (app/platform/parameters.py), the global headers on every
    operation, and If-None-Match judged as RFC 9110 says on the lists it tags."""

    ARGUMENTS_PARSER = Parser()
    PAGINATION_ARGUMENTS_PARSER = Parser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(_global_headers_doc)

    def _check_not_modified(self, etag: str) -> None:
        """304 when If-None-Match names this ETag, weakly compared; a malformed header is a 400."""
        header = request.headers.get("If-None-Match")
        if request.method not in self.METHODS_CHECKING_NOT_MODIFIED or header is None:
            return
        try:
            tags = parse_entity_tags(header)
        except ValueError as exc:
            raise BadRequest("If-None-Match must be * or a list of entity tags") from exc
        if tags.star or etag in tags.strong | tags.weak:
            raise NotModified


def _global_headers_doc(doc: dict[str, Any], _info: Any, **_kwargs: Any) -> dict[str, Any]:
    doc.setdefault("parameters", []).extend(GLOBAL_HEADERS)
    return doc


def operation(operation_id: str) -> Any:
    """A stable operationId (the name generated clients give the call)."""
    return flask_smorest.Blueprint.doc(operationId=operation_id)


class Api(flask_smorest.Api):
    """flask-smorest's Api, answering every HTTP error (404, 405, 413, 422, ...) as problem+json."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_RESPONSE_CONTENT_TYPE = "application/json"

    def _register_responses(self) -> None:
        """Document every error response (and the `default` one) as application/problem+json, each
        with an example of its own status."""
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
                response["example"] = example_problem(status)
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {
            "description": "an error, as RFC 9457 problem details",
            "schema": self.ERROR_SCHEMA,
            "example": example_problem(503, "the database is unavailable; nothing was changed, retry shortly"),
        }
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)
        for name, parameter in GLOBAL_HEADERS.items():
            self.spec.components.parameter(name, "header", parameter)

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
        return problem(status, detail, headers, errors=cap_errors(errors), **(data.get("extensions") or {}))


def _detail(status: int, error: HTTPException, errors: Any) -> str:
    if status == 422 and errors:
        return "the request does not validate: see errors for each field"
    if status == 400 and errors:
        return "the request could not be parsed: see errors"
    if status >= 500:
        return "the server failed to handle this request; it has been logged"
    return error.description or HTTPStatus(status).description
