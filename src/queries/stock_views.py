"""Stock query endpoints (GET only): read the inventory_levels projection and nothing else."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from werkzeug.exceptions import NotFound

from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.web import engine
from queries import inventory
from queries.freshness import fresh_enough

blp = Blueprint("stock-queries", __name__, description="Queries: read the inventory_levels projection")


class LevelSchema(ResponseSchema):
    sku = ma.fields.String(required=True, metadata={"example": "SKU-1"})
    on_hand = ma.fields.Integer(required=True, metadata={"example": 10})
    reserved = ma.fields.Integer(required=True, metadata={"example": 3})
    available = ma.fields.Integer(required=True, metadata={"description": "on_hand - reserved", "example": 7})
    version = ma.fields.Integer(required=True, metadata={"description": "the SKU version this row shows"})


class LevelFilterSchema(ma.Schema):
    available_below = ma.fields.Integer(
        validate=ma.validate.Range(-(2**62), 2**62),
        metadata={"description": "only SKUs with fewer units available than this (what to restock)"},
    )


class LevelArgsSchema(ma.Schema):
    min_version = ma.fields.Integer(
        validate=ma.validate.Range(1, 2**31 - 1),
        metadata={
            "description": "read your writes: wait (bounded) until the projection shows at least this version "
            "(a stock command's `version`); 409 with Retry-After if it does not in time"
        },
    )


@blp.route("/inventory")
class Levels(MethodView):
    @blp.arguments(LevelFilterSchema(), location="query")
    @blp.response(200, LevelSchema(many=True))
    @blp.paginate()
    @operation("list_inventory")
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """List tracked SKUs in SKU order (optionally those running low)"""
        with engine().connect() as conn:
            page, total = inventory.list_levels(
                conn, filters.get("available_below"), pagination_parameters.first_item, pagination_parameters.page_size
            )
        pagination_parameters.item_count = total
        return page


@blp.route("/inventory/<sku:sku>")
class SkuLevel(MethodView):
    @blp.arguments(LevelArgsSchema(), location="query")
    @blp.response(200, LevelSchema)
    @problem_responses(blp, {404: "the SKU is untracked (or not projected yet)", 409: "not yet at min_version"})
    @operation("get_inventory")
    def get(self, args: dict[str, Any], sku: str) -> Any:
        """Show one SKU's stock: on hand, reserved, available"""
        level = fresh_enough(lambda conn: inventory.get_level(conn, sku), "the SKU", args.get("min_version"))
        if level is None:
            raise NotFound(f"SKU {sku} is untracked: no stock was ever received (or it is not projected yet)")
        return level
