"""Query responses and filters."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from app.eventlog.events import OrderStatus
from app.platform.api import ResponseSchema

STATUSES = [status.value for status in OrderStatus]  # in lifecycle order, as the OpenAPI enum lists them


class OrderFilterSchema(ma.Schema):
    status = ma.fields.String(validate=validate.OneOf(STATUSES))
    customer_id = ma.fields.String(validate=validate.Length(1, 64))


class ItemSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)
    unit_price = ma.fields.String(required=True, metadata={"example": "9.99"})
    line_total = ma.fields.String(required=True, metadata={"example": "19.98"})


class ShipmentSchema(ResponseSchema):
    carrier = ma.fields.String(required=True)
    tracking_number = ma.fields.String(required=True)
    service_level = ma.fields.String(required=True)


class OrderSummarySchema(ResponseSchema):
    order_id = ma.fields.UUID(required=True)
    customer_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(STATUSES))
    currency = ma.fields.String(required=True)
    total = ma.fields.String(required=True, metadata={"description": "decimal string"})
    paid_amount = ma.fields.String(required=True)
    refunded_amount = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True, metadata={"description": "the order version this view reflects"})
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)


class OrderSchema(OrderSummarySchema):
    items = ma.fields.List(ma.fields.Nested(ItemSchema), required=True)
    shipment = ma.fields.Nested(ShipmentSchema, allow_none=True, required=True)
    cancellation_reason = ma.fields.String(allow_none=True, required=True)
