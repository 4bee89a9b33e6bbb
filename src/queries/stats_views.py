"""Sales statistics endpoints (GET only), over the sales_stats projection."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from werkzeug.exceptions import NotFound, UnprocessableEntity

from app.eventlog.money import ISO_4217
from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.web import engine
from queries import sales

blp = Blueprint("stats", __name__, description="Sales statistics (the sales_stats read model)")

MAX_DAYS = 3660


class SalesArgsSchema(ma.Schema):
    from_ = ma.fields.Date(data_key="from", metadata={"description": "first day (UTC), default 30 days ago"})
    to = ma.fields.Date(metadata={"description": "last day (UTC), inclusive, default today"})
    currency = ma.fields.String(validate=ma.validate.OneOf(sorted(ISO_4217)))


class DaySchema(ResponseSchema):
    day = ma.fields.Date(required=True)
    currency = ma.fields.String(required=True)
    orders = ma.fields.Integer(required=True, metadata={"description": "orders placed that day"})
    revenue = ma.fields.String(required=True, metadata={"description": "payments received that day"})
    refunds = ma.fields.String(required=True, metadata={"description": "refunds for paid orders cancelled that day"})
    net = ma.fields.String(required=True)


class CurrencyStatsSchema(ResponseSchema):
    currency = ma.fields.String(required=True)
    orders = ma.fields.Integer(required=True)
    paid_orders = ma.fields.Integer(required=True)
    lifetime_value = ma.fields.String(required=True, metadata={"description": "payments less refunds"})
    first_order_at = ma.fields.DateTime(required=True)
    last_order_at = ma.fields.DateTime(required=True)


class CustomerStatsSchema(ResponseSchema):
    customer_id = ma.fields.String(required=True)
    orders = ma.fields.Integer(required=True)
    by_currency = ma.fields.List(ma.fields.Nested(CurrencyStatsSchema), required=True)


@blp.route("/stats/sales")
class Sales(MethodView):
    @blp.arguments(SalesArgsSchema(), location="query")
    @blp.response(200, DaySchema(many=True))
    @operation("get_sales_stats")
    def get(self, args: dict[str, Any]) -> Any:
        """Orders, revenue and refunds per day and currency"""
        end = args.get("to") or datetime.now(UTC).date()
        month_before = end - timedelta(days=30) if end > date.min + timedelta(days=30) else date.min
        start = args.get("from_") or month_before
        if start > end or (end - start).days > MAX_DAYS:
            raise UnprocessableEntity(f"'from' must be on or before 'to', at most {MAX_DAYS} days apart")
        with engine().connect() as conn:
            return sales.daily_sales(conn, start, end, args.get("currency"))


@blp.route("/customers/<string:customer_id>/stats")
class CustomerStats(MethodView):
    @blp.response(200, CustomerStatsSchema)
    @problem_responses(blp, {404: "no orders from this customer (yet)"})
    @operation("get_customer_stats")
    def get(self, customer_id: str) -> Any:
        """A customer's order count and lifetime value, per currency"""
        with engine().connect() as conn:
            rows = sales.customer_stats(conn, customer_id)
        if not rows:
            raise NotFound(f"no orders from customer {customer_id!r}")
        return {"customer_id": customer_id, "orders": sum(r["orders"] for r in rows), "by_currency": rows}
