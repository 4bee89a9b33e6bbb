"""Query endpoints (GET only): read projection tables and nothing else."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import orjson
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from werkzeug.exceptions import NotFound, PreconditionFailed

from app.problems import problem_responses
from app.web import engine, settings
from queries import orders
from queries.schemas import OrderFilterSchema, OrderSchema, OrderSummarySchema

blp = Blueprint("order-queries", __name__, description="Queries: read the order projections")


VERSION_HEADERS = {
    "X-Projection-Version": {
        "description": "the order version this response shows (compare with a command's `version`)",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'the order version this response shows, e.g. "3": the ETag commands answer with and '
        "accept in If-Match; If-None-Match with it answers 304 until the order changes",
        "schema": {"type": "string"},
    },
}


@blp.route("/orders")
class OrderList(MethodView):
    @blp.etag
    @blp.arguments(OrderFilterSchema(), location="query")
    @blp.response(200, OrderSummarySchema(many=True))
    @blp.paginate()
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """List orders, newest first"""
        with engine().connect() as conn:
            page, total = orders.list_orders(
                conn,
                filters.get("status"),
                filters.get("customer_id"),
                pagination_parameters.first_item,
                pagination_parameters.page_size,
            )
        pagination_parameters.item_count = total
        return page


class DetailArgsSchema(ma.Schema):
    min_version = ma.fields.Integer(
        validate=ma.validate.Range(1, 2**31 - 1),
        metadata={
            "description": "read your writes: wait (bounded) until the projection shows at least this version "
            "(a command's `version`); 409 with Retry-After if it does not in time"
        },
    )


CONDITIONS = {
    "parameters": [
        {
            "in": "header",
            "name": "If-None-Match",
            "required": False,
            "schema": {"type": "string"},
            "description": 'an ETag read before, e.g. "3": 304 without a body while the order is still at it',
        },
        {
            "in": "header",
            "name": "If-Match",
            "required": False,
            "schema": {"type": "string"},
            "description": 'an ETag, e.g. "3": 412 unless the order is shown at that version',
        },
    ]
}
DETAIL_ERRORS = {
    404: "the projection has no such order (yet)",
    409: "not yet at min_version",
    412: "If-Match names another version",
}


@blp.route("/orders/<uuid:order_id>")
class OrderDetail(MethodView):
    @blp.arguments(DetailArgsSchema(), location="query")
    @blp.response(200, OrderSchema, headers=VERSION_HEADERS)
    @blp.alt_response(304, description="Not Modified: If-None-Match names the version shown")
    @problem_responses(blp, DETAIL_ERRORS)
    @blp.doc(**CONDITIONS)
    def get(self, args: dict[str, Any], order_id: Any) -> Any:
        """Show one order

        The order's version is its ETag, the same one commands answer with and accept in If-Match:
        read, then change with `If-Match` set to what you read.
        """
        try:
            order = orders.get_order_at_least(engine(), str(order_id), args.get("min_version"), settings().read_wait_ms)
        except orders.NotYetProjected as exc:
            extensions = {"wanted_version": exc.wanted, "projected_version": exc.projected}
            abort(409, message=str(exc), headers={"Retry-After": "1"}, extensions=extensions)
        if order is None:
            raise NotFound(f"no order {order_id} (a new order appears once the projector has applied it)")
        # get_order shapes the document as OrderSchema shows it (a test compares the two), so it is
        # encoded once here rather than dumped field by field and hashed again for an ETag.
        version = str(order["version"])
        if request.if_match and not request.if_match.contains(version):  # strong comparison (RFC 9110)
            raise PreconditionFailed(f"the order is shown at version {version}, not {request.headers['If-Match']}")
        headers = {"X-Projection-Version": version, "ETag": f'"{version}"'}
        if request.if_none_match.contains_weak(version):
            return Response(status=304, headers=headers)
        return Response(orjson.dumps(order), headers=headers, mimetype="application/json")
