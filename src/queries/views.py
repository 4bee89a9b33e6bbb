"""Query endpoints (GET only): read projection tables and nothing else."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import orjson
from flask import Response, g
from flask.views import MethodView
from werkzeug.exceptions import NotFound, PreconditionFailed

from app.eventlog.keys import web_keyring
from app.platform.api import Blueprint, operation
from app.platform.conditions import EntityTags, EntityTagsField, describe
from app.platform.problems import problem_responses
from app.platform.web import engine
from queries import orders
from queries.freshness import fresh_enough
from queries.personal import reveal
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
    @operation("list_orders")
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """List orders, newest first"""
        with engine().connect() as conn:
            # a customer sees its own only, whatever it asks
            customer = g.principal.customer_id if g.principal.role == "customer" else filters.get("customer_id")
            page, total = orders.list_orders(
                conn,
                filters.get("status"),
                customer,
                pagination_parameters.first_item,
                pagination_parameters.page_size,
            )
            reveal(conn, web_keyring(), g.principal, page)
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


class ConditionalReadHeaders(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    if_none_match = EntityTagsField(
        data_key="If-None-Match",
        metadata={"description": 'an ETag read before, e.g. "3": 304 without a body while the order is still at '
                  "it (weak comparison: W/\"3\" too)"},
    )  # fmt: skip
    if_match = EntityTagsField(
        data_key="If-Match",
        metadata={"description": 'an ETag, e.g. "3": 412 unless the order is shown at that version (strong '
                  "comparison)"},
    )  # fmt: skip


DETAIL_ERRORS = {
    404: "the projection has no such order (yet)",
    409: "not yet at min_version",
    412: "If-Match names another version",
}


def owned(order: dict[str, Any] | None) -> dict[str, Any] | None:
    """Another customer's order is, to a customer token, no order at all (even while waiting)."""
    return order if order is not None and g.principal.owns(order["customer_id"]) else None


@blp.route("/orders/<uuid:order_id>")
class OrderDetail(MethodView):
    @blp.arguments(DetailArgsSchema(), location="query")
    @blp.arguments(ConditionalReadHeaders(), location="headers", error_status_code=400)
    @blp.response(200, OrderSchema, headers=VERSION_HEADERS)
    @blp.alt_response(304, description="Not Modified: If-None-Match names the version shown")
    @problem_responses(blp, DETAIL_ERRORS)
    @operation("get_order")
    def get(self, args: dict[str, Any], headers: dict[str, Any], order_id: Any) -> Any:
        """Show one order

        The order's version is its ETag, the same one commands answer with and accept in If-Match:
        read, then change with `If-Match` set to what you read.
        """
        order = fresh_enough(lambda conn: owned(orders.get_order(conn, str(order_id))), "the order",
                             args.get("min_version"))  # fmt: skip
        if order is None:
            raise NotFound(f"no order {order_id} (a new order appears once the projector has applied it)")
        if order["personal"] is None:  # (no key to look at)
            reveal(None, web_keyring(), g.principal, [order])
        else:
            with engine().connect() as conn:
                reveal(conn, web_keyring(), g.principal, [order])
        # get_order shapes the document as OrderSchema shows it (a test compares the two), so it is
        # encoded once here rather than dumped field by field and hashed again for an ETag.
        version = order["version"]
        if_match: EntityTags | None = headers.get("if_match")
        if if_match is not None and not if_match.matches_strongly(version):
            raise PreconditionFailed(f"the order is shown at version {version}, not {describe(if_match)}")
        etag = {"X-Projection-Version": str(version), "ETag": f'"{version}"'}
        if_none_match: EntityTags | None = headers.get("if_none_match")
        # Not Modified only when the process manager is not behind this version: its `fulfilment` may
        # change after the order's last event (units released after a cancellation, say).
        # Nor once its personal data was erased: the copy the client holds must not stand.
        settled = order["fulfilment"]["version"] in (None, version) and order["personal_data"] != "erased"
        if if_none_match is not None and if_none_match.matches_weakly(version) and settled:
            return Response(status=304, headers=etag)
        return Response(orjson.dumps(order), headers=etag, mimetype="application/json")
