"""Command endpoints (POST/DELETE only): parse, call one handler, answer with version and position."""

from __future__ import annotations

from typing import Any

from flask import g, url_for
from flask.views import MethodView
from werkzeug.exceptions import Forbidden

from app.eventlog.events import Address, PersonalData
from app.eventlog.keys import web_keyring
from app.platform.api import Blueprint, operation
from app.platform.problems import problem_responses
from app.platform.validation import EmptySchema
from app.platform.web import event_metadata
from commands import handlers
from commands.execution import (
    HEADERS,
    CommandHeaders,
    ConditionalCommandHeaders,
    answer_refusals,
    execute,
    expected_versions,
)
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


ETAG_HEADER = {"ETag": {"description": "the order's new version", "schema": {"type": "string"}}}
ERRORS = {
    404: "no such order",
    409: "not allowed in the order's state",
    412: "If-Match is stale",
    422: "the body does not validate, or a limit would be exceeded",
}
_alt_responses = problem_responses(blp, ERRORS)


def _run(cmd: handlers.OrderCommand, headers: dict[str, Any]) -> Any:
    expected = expected_versions(headers)
    return execute(lambda conn: handlers.handle(conn, cmd, event_metadata(), expected), headers, OUTCOME.dump)


def personal_data(data: dict[str, Any]) -> PersonalData | None:
    """The order's personal data from the body (None if it has none)."""
    email, address = data.get("email"), data.get("shipping_address")
    if email is None and address is None:
        return None
    return PersonalData(email, None if address is None else Address(**address))


def _location(outcome: handlers.Outcome) -> str:
    return url_for("order-queries.OrderDetail", order_id=outcome.order_id)


@blp.route("/orders")
class Orders(MethodView):
    @blp.arguments(PlaceOrderSchema())
    @blp.arguments(CommandHeaders(), **HEADERS)
    @blp.response(201, CommandOutcomeSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG_HEADER})
    @problem_responses(blp, {422: ERRORS[422]})
    @operation("place_order")
    def post(self, data: dict[str, Any], headers: dict[str, Any]) -> Any:
        """Place an order"""
        if not g.principal.owns(data["customer_id"]):
            raise Forbidden("a customer token places orders for its own customer only")
        items = tuple(handlers.NewLine(**item) for item in data["items"])
        cmd = handlers.PlaceOrder(data["customer_id"], data["currency"], items, personal_data(data))
        keyring = web_keyring()
        run = lambda conn: handlers.place_order(conn, cmd, event_metadata(), keyring.sealer(conn))  # noqa: E731
        return execute(run, headers, OUTCOME.dump, 201, _location)


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


answer_refusals(blp)
