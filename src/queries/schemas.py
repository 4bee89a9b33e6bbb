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


class ReservedLineSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    quantity = ma.fields.Integer(required=True)


class ShortLineSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    requested = ma.fields.Integer(required=True, metadata={"description": "units the order asked for"})
    available = ma.fields.Integer(required=True, metadata={"description": "units stock could give it"})


FULFILMENT_STATES = ["reserving", "reserved", "rejected", "released", "shipped"]
DEADLINE_STATES = ["pending", "met", "cancelled", "fired"]


class FulfilmentSchema(ResponseSchema):
    state = ma.fields.String(
        required=True,
        validate=validate.OneOf(FULFILMENT_STATES),
        metadata={
            "description": "reserving: the process manager has not reserved the order's stock yet; reserved:"
            " every tracked line is held; rejected: stock was short (the order is rejected); released: the"
            " order was cancelled or rejected and its units given back; shipped: its units left stock"
        },
    )
    reserved = ma.fields.List(
        ma.fields.Nested(ReservedLineSchema), required=True, metadata={"description": "units held, per tracked SKU"}
    )
    short = ma.fields.List(
        ma.fields.Nested(ShortLineSchema),
        allow_none=True,
        required=True,
        metadata={"description": "the lines stock could not cover (rejected orders)"},
    )
    payment_due_at = ma.fields.DateTime(
        allow_none=True,
        required=True,
        metadata={
            "description": "when an unpaid order is cancelled (ORDERSTREAM_PAYMENT_TIMEOUT_S after it was placed)"
        },
    )
    deadline = ma.fields.String(
        allow_none=True,
        required=True,
        validate=validate.OneOf(DEADLINE_STATES),
        metadata={
            "description": "pending: the order is unpaid and the deadline will cancel it; met: it was paid in"
            " time; cancelled: it was cancelled or rejected first; fired: the deadline cancelled it"
        },
    )
    version = ma.fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "the order version the process manager last reacted to (null: none yet)"},
    )


class AddressSchema(ResponseSchema):
    name = ma.fields.String(required=True)
    line1 = ma.fields.String(required=True)
    line2 = ma.fields.String(required=True, allow_none=True)
    city = ma.fields.String(required=True)
    postal_code = ma.fields.String(required=True)
    country = ma.fields.String(required=True, metadata={"description": "ISO 3166-1 alpha-2"})


PERSONAL_DATA_STATES = ["shown", "withheld", "erased", "none"]


class PersonalFieldsSchema(ResponseSchema):
    """The personal data of a record, and what became of it (queries/personal.py)."""

    email = ma.fields.String(required=True, allow_none=True, metadata={"x-personal-data": True})
    shipping_address = ma.fields.Nested(
        AddressSchema, required=True, allow_none=True, metadata={"x-personal-data": True}
    )
    personal_data = ma.fields.String(
        required=True,
        validate=validate.OneOf(PERSONAL_DATA_STATES),
        metadata={
            "description": "shown: the fields hold it; withheld: it exists and this token may not see it (a reader"
            " or writer not granted personal data); erased: the customer's data was erased (the fields are null"
            " for good); none: the order carries none"
        },
    )


class OrderSummarySchema(PersonalFieldsSchema):
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
    cancellation_reason = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "why it was cancelled or rejected"}
    )
    fulfilment = ma.fields.Nested(
        FulfilmentSchema,
        required=True,
        metadata={
            "description": "the fulfilment process manager's state for the order: its stock and payment deadline"
        },
    )
