"""Command endpoints (POST/DELETE only): parse, call one handler, answer with version and position."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, json, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Connection
from werkzeug.exceptions import UnsupportedMediaType

from app.db import pipelined_transaction
from app.eventstore import ConcurrencyError
from app.metrics import EVENTS_APPENDED
from app.money import InvalidAmount
from app.problems import problem, problem_responses
from app.web import engine, event_metadata, settings
from commands import handlers, idempotency
from commands.errors import InvalidTransition, ItemNotFound, OrderNotFound, VersionMismatch
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

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": "makes a retry safe: the same key and body return the first response and append nothing",
}
IDEMPOTENCY = {"parameters": [IDEMPOTENCY_KEY]}
IF_MATCH = {
    "parameters": [
        IDEMPOTENCY_KEY,
        {
            "in": "header",
            "name": "If-Match",
            "required": False,
            "schema": {"type": "string"},
            "description": 'ETag of the order version the command expects, e.g. "3"; 412 if it moved on',
        },
    ]
}
ETAG_HEADER = {"ETag": {"description": "the order's new version", "schema": {"type": "string"}}}
ERRORS = {404: "no such order", 409: "not allowed in the order's state", 412: "If-Match is stale"}
_alt_responses = problem_responses(blp, ERRORS)


@blp.before_request
def _require_json() -> None:
    if (request.content_length or request.headers.get("Transfer-Encoding")) and not request.is_json:
        raise UnsupportedMediaType("send the command as application/json")


def _expected_version() -> int | None:
    """The version named by If-Match; a value that is no version of ours can never match."""
    if request.if_match.star_tag or not request.headers.get("If-Match"):
        return None
    for tag in request.if_match.as_set():
        if tag and tag.isdigit() and len(tag) < 10:
            return int(tag)
    return -1


def _execute(run: Callable[[Connection], handlers.Outcome], status: int = 200) -> Any:
    """Run a command in one transaction with its Idempotency-Key (if any) and answer it.

    A retry of a completed command gets the stored response, marked `Idempotent-Replayed: true`.
    """
    key = request.headers.get("Idempotency-Key")
    actor = event_metadata()["actor"]
    with pipelined_transaction(engine()) as conn:
        if key is not None:
            request_print = idempotency.fingerprint(request.method, request.path, request.get_json(silent=True))
            stored = idempotency.claim(conn, actor, key, request_print, settings().idempotency_ttl_s)
            if stored is not None:
                headers = {**stored.headers, "Idempotent-Replayed": "true"}
                return Response(json.dumps(stored.body), stored.status, headers, mimetype="application/json")
        outcome = run(conn)
        headers = {"ETag": f'"{outcome.version}"'}
        if status == 201:
            headers["Location"] = url_for("order-queries.OrderDetail", order_id=outcome.order_id)
        if key is not None:
            answer = idempotency.StoredResponse(status, OUTCOME.dump(outcome), headers)
            idempotency.complete(conn, actor, key, answer)
    for event_type in outcome.types:  # counted once committed
        EVENTS_APPENDED.labels(event_type).inc()
    return outcome, status, headers


def _run(cmd: handlers.OrderCommand) -> Any:
    return _execute(lambda conn: handlers.handle(conn, cmd, event_metadata(), _expected_version()))


@blp.route("/orders")
class Orders(MethodView):
    @blp.arguments(PlaceOrderSchema())
    @blp.response(201, CommandOutcomeSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG_HEADER})
    @blp.doc(**IDEMPOTENCY)
    def post(self, data: dict[str, Any]) -> Any:
        """Place an order"""
        items = tuple(handlers.NewLine(**item) for item in data["items"])
        cmd = handlers.PlaceOrder(data["customer_id"], data["currency"], items)
        return _execute(lambda conn: handlers.place_order(conn, cmd, event_metadata()), 201)


@blp.route("/orders/<uuid:order_id>/items")
class Items(MethodView):
    @blp.arguments(LineSchema())
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def post(self, data: dict[str, Any], order_id: Any) -> Any:
        """Add an item (or more of one already on the order)"""
        return _run(handlers.AddItem(str(order_id), handlers.NewLine(**data)))


@blp.route("/orders/<uuid:order_id>/items/<string:sku>")
class Item(MethodView):
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def delete(self, order_id: Any, sku: str) -> Any:
        """Remove an item"""
        return _run(handlers.RemoveItem(str(order_id), sku))


@blp.route("/orders/<uuid:order_id>/payments")
class Payments(MethodView):
    @blp.arguments(PayOrderSchema())
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def post(self, data: dict[str, Any], order_id: Any) -> Any:
        """Pay the order (the amount must equal its total)"""
        return _run(handlers.PayOrder(str(order_id), data["amount"], data["reference"]))


@blp.route("/orders/<uuid:order_id>/shipments")
class Shipments(MethodView):
    @blp.arguments(ShipOrderSchema())
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def post(self, data: dict[str, Any], order_id: Any) -> Any:
        """Ship a paid order"""
        return _run(handlers.ShipOrder(str(order_id), data["carrier"], data["tracking_number"], data["service_level"]))


@blp.route("/orders/<uuid:order_id>/delivery")
class Delivery(MethodView):
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def post(self, order_id: Any) -> Any:
        """Record that a shipped order was delivered"""
        return _run(handlers.DeliverOrder(str(order_id)))


@blp.route("/orders/<uuid:order_id>/cancellation")
class Cancellation(MethodView):
    @blp.arguments(CancelOrderSchema())
    @blp.response(200, CommandOutcomeSchema, headers=ETAG_HEADER)
    @blp.doc(**IF_MATCH)
    @_alt_responses
    def post(self, data: dict[str, Any], order_id: Any) -> Any:
        """Cancel a pending or paid order (a paid one records a refund)"""
        return _run(handlers.CancelOrder(str(order_id), data["reason"]))


STATUS_OF: dict[type[Exception], int] = {
    idempotency.InvalidKey: 400,
    idempotency.KeyReused: 422,
    OrderNotFound: 404,
    ItemNotFound: 404,
    InvalidTransition: 409,
    ConcurrencyError: 409,
    VersionMismatch: 412,
    InvalidAmount: 422,
}


def _refusal(exc: Exception) -> Response:
    status = STATUS_OF[type(exc)]
    if isinstance(exc, ConcurrencyError) and request.headers.get("If-Match"):
        status = 412
    return problem(status, str(exc))


for _error in STATUS_OF:
    blp.register_error_handler(_error, _refusal)
