"""Audit and time travel: a read-only blueprint over the event log (not over projections).

History is folded by the same Order aggregate the command side decides with, so "the order as it
was" can never disagree with what the commands saw at the time.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import marshmallow as ma
from flask import g, url_for
from flask.views import MethodView
from werkzeug.exceptions import NotFound, UnprocessableEntity

from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import EVENT_TYPES, Sealed
from app.eventlog.keys import web_keyring
from app.eventlog.money import format_amount
from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.db import autocommit
from app.platform.problems import problem_responses
from app.platform.web import engine
from commands.order import Order
from queries.personal import reveal
from queries.schemas import PersonalFieldsSchema

blp = Blueprint("audit", __name__, description="Audit and time travel over the event log (read-only)")

MAX_LIMIT = 1000


class EnvelopeSchema(ResponseSchema):
    event_id = ma.fields.UUID(required=True)
    stream_id = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    position = ma.fields.Integer(required=True)
    type = ma.fields.String(required=True)
    schema_version = ma.fields.Integer(required=True)
    payload = ma.fields.Dict(
        required=True,
        metadata={
            "description": "as stored, in its schema version; but personal data, stored sealed, is shown as"
            " `email`, `shipping_address` and `personal_data` (shown, withheld, erased), opened only for a"
            " token allowed to see it"
        },
    )
    metadata = ma.fields.Dict(required=True, metadata={"description": "request_id, correlation_id, actor, ..."})
    recorded_at = ma.fields.DateTime(required=True)


class FeedArgsSchema(ma.Schema):
    after = ma.fields.Integer(load_default=0, validate=ma.validate.Range(0, 2**62))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_LIMIT))
    type = ma.fields.String(validate=ma.validate.OneOf(sorted(EVENT_TYPES)))


class FeedSchema(ResponseSchema):
    events = ma.fields.List(ma.fields.Nested(EnvelopeSchema), required=True)
    next = ma.fields.String(
        required=True, metadata={"description": "the next page; empty when there is nothing after it yet"}
    )


class HistoryArgsSchema(ma.Schema):
    at = ma.fields.AwareDateTime(metadata={"description": "RFC 3339 time, e.g. 2026-11-27T10:00:00Z"})
    version = ma.fields.Integer(validate=ma.validate.Range(1, 2**31 - 1))


class HistoricLineSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    unit_price = ma.fields.String(required=True)


class HistoricOrderSchema(PersonalFieldsSchema):
    order_id = ma.fields.UUID(required=True)
    version = ma.fields.Integer(required=True)
    as_of = ma.fields.DateTime(required=True, metadata={"description": "recorded time of the last event folded"})
    status = ma.fields.String(required=True)
    customer_id = ma.fields.String(required=True)
    currency = ma.fields.String(required=True)
    items = ma.fields.List(ma.fields.Nested(HistoricLineSchema), required=True)
    total = ma.fields.String(required=True)
    paid_amount = ma.fields.String(required=True)


@blp.route("/events")
class Feed(MethodView):
    @blp.arguments(FeedArgsSchema(), location="query")
    @blp.response(200, FeedSchema)
    @operation("list_events")
    def get(self, args: dict[str, Any]) -> Any:
        """The global event feed in position order, with a cursor (`next`) to page on"""
        with autocommit(engine()) as conn:
            events = eventstore.feed(conn, args["after"], args["limit"], args.get("type"))
        after = events[-1].position if events else args["after"]
        shown = _shown(events)
        query = {"after": after, "limit": args["limit"], **({"type": args["type"]} if args.get("type") else {})}
        next_url = url_for("audit.Feed", **query)
        return {"events": shown, "next": next_url}, 200, {"Link": f'<{next_url}>; rel="next"'}


@blp.route("/orders/<uuid:order_id>/events")
class OrderEvents(MethodView):
    @blp.response(200, EnvelopeSchema(many=True))
    @problem_responses(blp, {404: "no such order"})
    @operation("list_order_events")
    def get(self, order_id: Any) -> Any:
        """One order's full history, with each event's metadata"""
        with autocommit(engine()) as conn:
            events = eventstore.load(conn, str(order_id))
        if not events or not g.principal.owns(events[0].payload["customer_id"]):  # another customer's: as if none
            raise NotFound(f"no order {order_id}")
        return _shown(events)


@blp.route("/orders/<uuid:order_id>/history")
class OrderHistory(MethodView):
    @blp.arguments(HistoryArgsSchema(), location="query")
    @blp.response(200, HistoricOrderSchema)
    @problem_responses(blp, {404: "the order did not exist at that time or version"})
    @operation("get_order_history")
    def get(self, args: dict[str, Any], order_id: Any) -> Any:
        """The order as it was at a time (`at`) or a version (`version`), folded from the log"""
        if "at" in args and "version" in args:
            raise UnprocessableEntity("give either at or version, not both")
        with autocommit(engine()) as conn:
            events = eventstore.load(conn, str(order_id), up_to_version=args.get("version"), recorded_by=args.get("at"))
        if not events or ("version" in args and events[-1].version < args["version"]):
            raise NotFound(f"order {order_id} did not exist at {when(args)}")
        if not g.principal.owns(events[0].payload["customer_id"]):  # another customer's: as if none
            raise NotFound(f"order {order_id} did not exist at {when(args)}")
        state = _state(Order.fold(str(order_id), [e.domain_event() for e in events]), events[-1].recorded_at)
        with autocommit(engine()) as conn:
            reveal(conn, web_keyring(), g.principal, [state])
        return state


def when(args: dict[str, Any]) -> str:
    return f"version {args['version']}" if "version" in args else str(args.get("at", "any time"))


def _state(order: Order, as_of: datetime) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "version": order.version,
        "as_of": as_of,
        "status": order.status.value,
        "customer_id": order.customer_id,
        "currency": order.currency,
        "items": [
            {"sku": x.sku, "quantity": x.quantity, "unit_price": format_amount(x.unit_price, order.currency)}
            for x in sorted(order.lines.values(), key=lambda line: line.sku)
        ],
        "total": format_amount(order.total, order.currency),
        "paid_amount": format_amount(order.paid_amount, order.currency),
        "personal": dataclasses.asdict(order.personal) if isinstance(order.personal, Sealed) else None,
    }


def _shown(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """Envelopes as a response shows them: personal data opened where the caller may see it (only
    those envelopes are copied; the rest go out as they are)."""
    shown = [dataclasses.replace(e, payload=dict(e.payload)) if "personal" in e.payload else e for e in events]
    personal = [e.payload for e in shown if "personal" in e.payload]
    if personal:
        with autocommit(engine()) as conn:
            reveal(conn, web_keyring(), g.principal, personal)
    return shown
