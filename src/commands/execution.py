"""What every command endpoint does alike: its headers (Idempotency-Key, If-Match), running it in
one transaction with its key, and the status of each refusal. The order endpoints (commands/views.py)
and the stock endpoints (commands/stock_views.py) both answer through here, so a rule such as "a
retried key replays the first response" is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import marshmallow as ma
from flask import Response, g, json, request
from sqlalchemy import Connection
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from app.eventlog.money import InvalidAmount
from app.eventlog.store import ConcurrencyError
from app.platform.api import Blueprint
from app.platform.body import NO_BODY, request_json
from app.platform.conditions import EntityTags, EntityTagsField, describe
from app.platform.db import pipelined_transaction
from app.platform.metrics import EVENTS_APPENDED
from app.platform.problems import problem
from app.platform.validation import FullMatch
from app.platform.web import engine, settings
from commands import idempotency
from commands.errors import (
    InsufficientStock,
    InvalidTransition,
    ItemNotFound,
    LimitExceeded,
    OrderNotFound,
    SkuNotFound,
    VersionMismatch,
)


class Outcome(Protocol):
    """What a handler returns: the stream's new version, the last position, the types appended."""

    @property
    def version(self) -> int: ...

    @property
    def types(self) -> tuple[str, ...]: ...


class CommandHeaders(ma.Schema):
    """Headers every command reads (a malformed one is a 400)."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = ma.fields.String(
        data_key="Idempotency-Key",
        validate=FullMatch(idempotency.KEY_PATTERN, error="1-255 printable ASCII characters"),
        metadata={"description": "makes a retry safe: the same key and body return the first response and "
                  "append nothing"},
    )  # fmt: skip


def if_match(what: str) -> EntityTagsField:
    """The If-Match header of a command on an existing `what` (an order, a SKU): its expected version."""
    return EntityTagsField(
        data_key="If-Match",
        metadata={"description": f'ETag of the {what} version the command expects, e.g. "3" (a list matches if '
                  f"any tag does; weak tags never match); 412 if the {what} moved on"},
    )  # fmt: skip


class ConditionalCommandHeaders(CommandHeaders):
    """...and, on an existing order, the version it is expected to be at."""

    if_match = if_match("order")


HEADERS = {"location": "headers", "error_status_code": 400}


def expected_versions(headers: dict[str, Any]) -> frozenset[int] | None:
    """The versions If-Match names (None: no condition). A weak tag can never match (RFC 9110
    compares If-Match strongly), so a header of weak tags only fails before anything is loaded."""
    tags: EntityTags | None = headers.get("if_match")
    if tags is None or tags.star:
        return None
    if not tags.strong:
        raise VersionMismatch(f"If-Match compares strongly: {describe(tags)} can never match; send the ETag as is")
    return tags.versions()


def execute(
    run: Callable[[Connection], Outcome],
    headers: dict[str, Any],
    dump: Callable[[Any], dict[str, Any]],
    status: int = 200,
    location: Callable[[Any], str] | None = None,
) -> Any:
    """Run a command in one transaction with its Idempotency-Key (if any) and answer it.

    A retry of a completed command gets the stored response, marked `Idempotent-Replayed: true`.
    Keys belong to the principal (the token's identity), never to a display name.

    A command without If-Match that meets a concurrent append (another client, the fulfilment
    process manager recording a reservation) is decided again on the state that append left, in a
    new transaction: the client named no version, so it asked for the command on the current one.
    With If-Match it is refused (412): the version it named is gone.
    """
    attempts = 1 if headers.get("if_match") is not None else CONFLICT_ATTEMPTS
    for attempt in Retrying(retry=retry_if_exception_type(ConcurrencyError), stop=stop_after_attempt(attempts),
                            wait=wait_random(0, 0.005), reraise=True):  # fmt: skip
        with attempt:
            return _execute(run, headers, dump, status, location)
    raise AssertionError("unreachable: Retrying returns or raises")  # pragma: no cover


CONFLICT_ATTEMPTS = 5


def _execute(
    run: Callable[[Connection], Outcome],
    headers: dict[str, Any],
    dump: Callable[[Any], dict[str, Any]],
    status: int,
    location: Callable[[Any], str] | None,
) -> Any:
    key = headers.get("idempotency_key")
    principal = g.principal.id
    with pipelined_transaction(engine()) as conn:
        if key is not None:
            body = request_json()
            request_print = idempotency.fingerprint(request.method, request.path, {} if body is NO_BODY else body)
            stored = idempotency.claim(conn, principal, key, request_print, settings().idempotency_ttl_s)
            if stored is not None:
                headers = {**stored.headers, "Idempotent-Replayed": "true"}
                return Response(json.dumps(stored.body), stored.status, headers, mimetype="application/json")
        outcome = run(conn)
        answer_headers = {"ETag": f'"{outcome.version}"'}
        if location is not None:
            answer_headers["Location"] = location(outcome)
        if key is not None:
            answer = idempotency.StoredResponse(status, dump(outcome), answer_headers)
            idempotency.complete(conn, principal, key, answer)
    for event_type in outcome.types:  # counted once committed
        EVENTS_APPENDED.labels(event_type).inc()
    return outcome, status, answer_headers


STATUS_OF: dict[type[Exception], int] = {
    idempotency.InvalidKey: 400,
    idempotency.KeyReused: 422,
    OrderNotFound: 404,
    SkuNotFound: 404,
    InsufficientStock: 409,
    ItemNotFound: 404,
    InvalidTransition: 409,
    LimitExceeded: 422,
    ConcurrencyError: 409,
    VersionMismatch: 412,
    InvalidAmount: 422,
}


def status_of(exc: Exception) -> int:
    """The status of a refusal: its own class's, or the nearest ancestor's in the table (so a new
    subclass of a known error answers as its parent does, never a 500)."""
    return next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)


def _refusal(exc: Exception) -> Response:
    status = status_of(exc)
    if isinstance(exc, ConcurrencyError) and request.headers.get("If-Match"):
        status = 412
    return problem(status, str(exc))


def answer_refusals(blp: Blueprint) -> None:
    """Answer every refusal in STATUS_OF, raised by one of the blueprint's views, as problem+json."""
    for error in STATUS_OF:
        blp.register_error_handler(error, _refusal)
