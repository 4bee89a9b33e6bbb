"""Command endpoints (POST/DELETE only): parse, call one handler, answer with version and position."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import Response, g, json, request, url_for
from flask.views import MethodView
from sqlalchemy import Connection

from app.eventlog.money import InvalidAmount
from app.eventlog.store import ConcurrencyError
from app.platform.api import Blueprint, operation
from app.platform.body import NO_BODY, request_json
from app.platform.conditions import EntityTags, EntityTagsField, describe
from app.platform.db import pipelined_transaction
from app.platform.metrics import EVENTS_APPENDED
from app.platform.problems import problem, problem_responses
from app.platform.validation import EmptySchema, FullMatch
from app.platform.web import engine, event_metadata, settings
from commands import handlers, idempotency
from commands.errors import InvalidTransition, ItemNotFound, LimitExceeded, OrderNotFound, VersionMismatch
from commands.schemas import (
    CancelOrderSchema,
    CommandOutcomeSchema,
    LineSchema,
    PayOrderSchema,
    PlaceOrderSchema,
    ShipOrderSchema,
)

OUTCOME = CommandOutcomeSchema()  # schemas are built once: building one per request costs more than using it
blp = Blueprint("order-commands", __name__, description="Commands: each appends events to the order's stream")


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


class ConditionalCommandHeaders(CommandHeaders):
    """...and, on an existing order, the version it is expected to be at."""

    if_match = EntityTagsField(
        data_key="If-Match",
        metadata={"description": 'ETag of the order version the command expects, e.g. "3" (a list matches if any '
                  "tag does; weak tags never match); 412 if the order moved on"},
    )  # fmt: skip


HEADERS = {"location": "headers", "error_status_code": 400}
ETAG_HEADER = {"ETag": {"description": "the order's new version", "schema": {"type": "string"}}}
ERRORS = {
    404: "no such order",
    409: "not allowed in the order's state",
    412: "If-Match is stale",
    422: "the body does not validate, or a limit would be exceeded",
}
_alt_responses = problem_responses(blp, ERRORS)


def _expected_versions(headers: dict[str, Any]) -> frozenset[int] | None:
    """The versions If-Match names (None: no condition). A weak tag can never match (RFC 9110
    compares If-Match strongly), so a header of weak tags only fails before anything is loaded."""
    tags: EntityTags | None = headers.get("if_match")
    if tags is None or tags.star:
        return None
    if not tags.strong:
        raise VersionMismatch(f"If-Match compares strongly: {describe(tags)} can never match; send the ETag as is")
    return tags.versions()


def _execute(run: Callable[[Connection], handlers.Outcome], headers: dict[str, Any], status: int = 200) -> Any:
    """Run a command in one transaction with its Idempotency-Key (if any) and answer it.

    A retry of a completed command gets the stored response, marked `Idempotent-Replayed: true`.
    Keys belong to the principal (the token's identity), never to a display name.
    """
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
        if status == 201:
            answer_headers["Location"] = url_for("order-queries.OrderDetail", order_id=outcome.order_id)
        if key is not None:
            answer = idempotency.StoredResponse(status, OUTCOME.dump(outcome), answer_headers)
            idempotency.complete(conn, principal, key, answer)
    for event_type in outcome.types:  # counted once committed
        EVENTS_APPENDED.labels(event_type).inc()
    return outcome, status, answer_headers


def _run(cmd: handlers.OrderCommand, headers: dict[str, Any]) -> Any:
    expected = _expected_versions(headers)
    return _execute(lambda conn: handlers.handle(conn, cmd, event_metadata(), expected), headers)


@blp.route("/orders")
class Orders(MethodView):
    @blp.arguments(PlaceOrderSchema())
    @blp.arguments(CommandHeaders(), **HEADERS)
    @blp.response(201, CommandOutcomeSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG_HEADER})
    @problem_responses(blp, {422: ERRORS[422]})
    @operation("place_order")
    def post(self, data: dict[str, Any], headers: dict[str, Any]) -> Any:
        """Place an order"""
        items = tuple(handlers.NewLine(**item) for item in data["items"])
        cmd = handlers.PlaceOrder(data["customer_id"], data["currency"], items)
        return _execute(lambda conn: handlers.place_order(conn, cmd, event_metadata()), headers, 201)


@blp.route("/orders/<uuid:order_id>/items")
class Items(MethodView):
    @blp.arguments(LineSchema())
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("add_item")
    def post(self, data: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Add an item (or more of one already on the order)"""
        return _run(handlers.AddItem(str(order_id), handlers.NewLine(**data)), headers)


@blp.route("/orders/<uuid:order_id>/items/<string:sku>")
class Item(MethodView):
    @blp.arguments(EmptySchema(), required=False)
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("remove_item")
    def delete(self, _body: dict[str, Any], headers: dict[str, Any], order_id: Any, sku: str) -> Any:
        """Remove an item"""
        return _run(handlers.RemoveItem(str(order_id), sku), headers)


@blp.route("/orders/<uuid:order_id>/payments")
class Payments(MethodView):
    @blp.arguments(PayOrderSchema())
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("pay_order")
    def post(self, data: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Pay the order (the amount must equal its total)"""
        return _run(handlers.PayOrder(str(order_id), data["amount"], data["reference"]), headers)


@blp.route("/orders/<uuid:order_id>/shipments")
class Shipments(MethodView):
    @blp.arguments(ShipOrderSchema())
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("ship_order")
    def post(self, data: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Ship a paid order"""
        cmd = handlers.ShipOrder(str(order_id), data["carrier"], data["tracking_number"], data["service_level"])
        return _run(cmd, headers)


@blp.route("/orders/<uuid:order_id>/delivery")
class Delivery(MethodView):
    @blp.arguments(EmptySchema(), required=False)
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("deliver_order")
    def post(self, _body: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Record that a shipped order was delivered"""
        return _run(handlers.DeliverOrder(str(order_id)), headers)


@blp.route("/orders/<uuid:order_id>/cancellation")
class Cancellation(MethodView):
    @blp.arguments(CancelOrderSchema())
    @blp.arguments(ConditionalCommandHeaders(), **HEADERS)
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @_alt_responses
    @operation("cancel_order")
    def post(self, data: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Cancel a pending or paid order (a paid one records a refund)"""
        return _run(handlers.CancelOrder(str(order_id), data["reason"]), headers)


STATUS_OF: dict[type[Exception], int] = {
    idempotency.InvalidKey: 400,
    idempotency.KeyReused: 422,
    OrderNotFound: 404,
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


for _error in STATUS_OF:
    blp.register_error_handler(_error, _refusal)
