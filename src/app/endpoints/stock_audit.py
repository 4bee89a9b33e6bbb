"""Audit and time travel for SKUs, as app/endpoints/audit.py gives them for orders: a SKU's events,
and its stock as it was at a time or version, folded by the same Sku aggregate the commands decide
with (from the log itself: snapshots are a cache of the present, never read here)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from werkzeug.exceptions import NotFound, UnprocessableEntity

from app.endpoints.audit import EnvelopeSchema, HistoryArgsSchema, when
from app.eventlog import store as eventstore
from app.eventlog.events import inventory_stream
from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.db import autocommit
from app.platform.problems import problem_responses
from app.platform.web import engine
from commands.inventory import Sku

blp = Blueprint("stock-audit", __name__, description="Audit and time travel over SKUs' streams (read-only)")


class HistoricStockSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    as_of = ma.fields.DateTime(required=True, metadata={"description": "recorded time of the last event folded"})
    on_hand = ma.fields.Integer(required=True)
    reserved = ma.fields.Integer(required=True)
    available = ma.fields.Integer(required=True)


@blp.route("/inventory/<sku:sku>/events")
class SkuEvents(MethodView):
    @blp.response(200, EnvelopeSchema(many=True))
    @problem_responses(blp, {404: "the SKU is untracked"})
    @operation("list_inventory_events")
    def get(self, sku: str) -> Any:
        """One SKU's full history, with each event's metadata"""
        with autocommit(engine()) as conn:
            events = eventstore.load(conn, inventory_stream(sku))
        if not events:
            raise NotFound(f"SKU {sku} is untracked: no stock was ever received")
        return events


@blp.route("/inventory/<sku:sku>/history")
class SkuHistory(MethodView):
    @blp.arguments(HistoryArgsSchema(), location="query")
    @blp.response(200, HistoricStockSchema)
    @problem_responses(blp, {404: "the SKU was not tracked at that time or version"})
    @operation("get_inventory_history")
    def get(self, args: dict[str, Any], sku: str) -> Any:
        """The SKU's stock as it was at a time (`at`) or a version (`version`), folded from the log"""
        if "at" in args and "version" in args:
            raise UnprocessableEntity("give either at or version, not both")
        with autocommit(engine()) as conn:
            events = eventstore.load(
                conn, inventory_stream(sku), up_to_version=args.get("version"), recorded_by=args.get("at")
            )
        if not events or ("version" in args and events[-1].version < args["version"]):
            raise NotFound(f"SKU {sku} was not tracked at {when(args)}")
        stock = Sku.fold(sku, [e.domain_event() for e in events])
        return {
            "sku": sku,
            "version": stock.version,
            "as_of": events[-1].recorded_at,
            "on_hand": stock.on_hand,
            "reserved": stock.reserved,
            "available": stock.available,
        }
