"""Query endpoints (GET only): read projection tables and nothing else."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort

from app.web import engine
from queries import orders
from queries.schemas import OrderFilterSchema, OrderSchema, OrderSummarySchema

blp = Blueprint("order-queries", __name__, description="Queries: read the order projections")


@blp.route("/orders")
class OrderList(MethodView):
    @blp.arguments(OrderFilterSchema, location="query")
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


@blp.route("/orders/<uuid:order_id>")
class OrderDetail(MethodView):
    @blp.response(200, OrderSchema)
    @blp.alt_response(404, description="the projection has no such order (yet)")
    def get(self, order_id: Any) -> Any:
        """Show one order"""
        with engine().connect() as conn:
            order = orders.get_order(conn, str(order_id))
        if order is None:
            abort(404, message=f"no order {order_id} (a new order appears once the projector has applied it)")
        return order
