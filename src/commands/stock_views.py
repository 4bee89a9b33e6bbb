"""Stock command endpoints: receipts and adjustments of a SKU, answered like the order commands
(Idempotency-Key, If-Match on the SKU's version, problem+json refusals) through commands/execution.py."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from app.platform.api import Blueprint, operation
from app.platform.problems import problem_responses
from app.platform.web import event_metadata, settings
from commands import stock
from commands.execution import HEADERS, CommandHeaders, answer_refusals, execute, expected_versions, if_match
from commands.schemas import AdjustmentSchema, ReceiptSchema, StockOutcomeSchema

OUTCOME = StockOutcomeSchema()
blp = Blueprint("stock-commands", __name__, description="Stock commands: each appends events to the SKU's stream")


class StockCommandHeaders(CommandHeaders):
    """...and the SKU version the command expects."""

    if_match = if_match("SKU")


_STALE_OR_INVALID = {412: "If-Match is stale", 422: "the body does not validate"}
ETAG_HEADER = {"ETag": {"description": "the SKU's new version", "schema": {"type": "string"}}}


def _run(cmd: stock.StockCommand, headers: dict[str, Any], status: int = 200) -> Any:
    expected, every = expected_versions(headers), settings().snapshot_every
    return execute(
        lambda conn: stock.handle(conn, cmd, event_metadata(), expected, every),
        headers,
        OUTCOME.dump,
        status,
        lambda outcome: url_for("stock-queries.SkuLevel", sku=outcome.sku),
    )


@blp.route("/inventory/<sku:sku>/receipts")
class Receipts(MethodView):
    @blp.arguments(ReceiptSchema())
    @blp.arguments(StockCommandHeaders(), **HEADERS)
    @blp.response(201, StockOutcomeSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG_HEADER})
    @problem_responses(blp, {409: "another writer moved the SKU meanwhile", **_STALE_OR_INVALID})
    @operation("receive_stock")
    def post(self, data: dict[str, Any], headers: dict[str, Any], sku: str) -> Any:
        """Record stock received (the first receipt starts tracking the SKU)"""
        return _run(stock.ReceiveStock(sku, data["quantity"], data["reference"]), headers, 201)


@blp.route("/inventory/<sku:sku>/adjustments")
class Adjustments(MethodView):
    @blp.arguments(AdjustmentSchema())
    @blp.arguments(StockCommandHeaders(), **HEADERS)
    @blp.response(200, StockOutcomeSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG_HEADER})
    @problem_responses(
        blp,
        {
            404: "the SKU is untracked (never received)",
            409: "the adjustment would leave fewer units on hand than are reserved",
            **_STALE_OR_INVALID,
        },
    )
    @operation("adjust_stock")
    def post(self, data: dict[str, Any], headers: dict[str, Any], sku: str) -> Any:
        """Correct the stock on hand by a number of units (negative: fewer)"""
        return _run(stock.AdjustStock(sku, data["quantity"], data["reason"]), headers)


answer_refusals(blp)
