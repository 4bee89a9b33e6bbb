"""The fulfilment process manager's state per order (its stock and payment deadline), and a summary."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from werkzeug.exceptions import NotFound

from app.endpoints.admin import blp
from app.platform.api import ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.web import engine
from queries import fulfilment
from queries.schemas import DEADLINE_STATES, FULFILMENT_STATES, FulfilmentSchema


class FulfilmentRowSchema(FulfilmentSchema):
    order_id = ma.fields.UUID(required=True)
    updated_at = ma.fields.DateTime(required=True)


class FulfilmentFilterSchema(ma.Schema):
    state = ma.fields.String(validate=ma.validate.OneOf(FULFILMENT_STATES[1:]))  # "reserving" has no row yet
    deadline = ma.fields.String(validate=ma.validate.OneOf(DEADLINE_STATES))


class FulfilmentSummarySchema(ResponseSchema):
    states = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.Integer(), required=True, metadata={"description": "orders by state"}
    )
    deadlines_pending = ma.fields.Integer(required=True, metadata={"description": "unpaid orders with a deadline"})
    deadlines_overdue = ma.fields.Integer(
        required=True, metadata={"description": "deadlines more than 5 s past due and not fired (is the rq worker up?)"}
    )
    next_deadline = ma.fields.DateTime(allow_none=True, required=True)


def summary() -> dict[str, Any]:
    with engine().connect() as conn:
        return fulfilment.counts(conn)


@blp.route("/fulfilment")
class FulfilmentList(MethodView):
    @blp.arguments(FulfilmentFilterSchema(), location="query")
    @blp.response(200, FulfilmentRowSchema(many=True))
    @blp.paginate()
    @operation("list_fulfilment")
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """Orders as the fulfilment process manager holds them, most recently changed first"""
        with engine().connect() as conn:
            rows, total = fulfilment.page(
                conn,
                filters.get("state"),
                filters.get("deadline"),
                min(pagination_parameters.first_item, 2**62),
                pagination_parameters.page_size,
            )
        pagination_parameters.item_count = total
        return rows


@blp.route("/fulfilment/summary")
class FulfilmentSummary(MethodView):
    @blp.response(200, FulfilmentSummarySchema)
    @operation("get_fulfilment_summary")
    def get(self) -> Any:
        """Orders by fulfilment state, and the payment deadlines pending and overdue"""
        return summary()


@blp.route("/fulfilment/<uuid:order_id>")
class FulfilmentOne(MethodView):
    @blp.response(200, FulfilmentRowSchema)
    @problem_responses(blp, {404: "the process manager has not reacted to that order (or there is none)"})
    @operation("get_fulfilment")
    def get(self, order_id: Any) -> Any:
        """One order's fulfilment: its state, the units it holds, what was short, its payment deadline"""
        with engine().connect() as conn:
            row = fulfilment.find(conn, str(order_id))
        if row is None:
            raise NotFound(f"the fulfilment process manager has not reacted to order {order_id}")
        return row
