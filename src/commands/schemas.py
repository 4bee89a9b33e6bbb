"""Command payloads as marshmallow schemas; unknown fields are refused."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from app.money import ISO_4217, InvalidAmount, check_decimal_string
from commands.order import MAX_LINES, MAX_QUANTITY

AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$"
SERVICE_LEVELS = ["standard", "express", "next_day"]
SKU = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$", error="a SKU is 1-64 letters, digits, '.', '_' or '-'")


class Amount(ma.fields.String):
    """Money as a decimal string ("12.50"); floats and exponents are refused so nothing is rounded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metadata = {"pattern": AMOUNT_PATTERN, **self.metadata}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ma.ValidationError('money is a decimal string such as "12.50", not a number')
        try:
            check_decimal_string(value)
        except InvalidAmount as exc:
            raise ma.ValidationError(str(exc)) from exc
        return value


def _text(max_length: int, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=validate.Length(1, max_length), **kwargs)


class LineSchema(ma.Schema):
    sku = ma.fields.String(required=True, validate=SKU, metadata={"example": "SKU-1"})
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(1, MAX_QUANTITY), metadata={"example": 2}
    )
    unit_price = Amount(required=True, metadata={"example": "9.99"})


class PlaceOrderSchema(ma.Schema):
    customer_id = _text(64, required=True, metadata={"example": "customer-42"})
    currency = ma.fields.String(
        required=True,
        validate=validate.OneOf(sorted(ISO_4217), error="not an ISO 4217 currency code"),
        metadata={"example": "EUR"},
    )
    items = ma.fields.List(ma.fields.Nested(LineSchema), required=True, validate=validate.Length(1, MAX_LINES))


class PayOrderSchema(ma.Schema):
    amount = Amount(required=True, metadata={"example": "19.98"})
    reference = _text(100, required=True, metadata={"example": "psp-7f3a"})


class ShipOrderSchema(ma.Schema):
    carrier = _text(100, required=True, metadata={"example": "DHL"})
    tracking_number = _text(100, required=True, metadata={"example": "JD0146000033"})
    service_level = ma.fields.String(
        load_default="standard", validate=validate.OneOf(SERVICE_LEVELS), metadata={"example": "express"}
    )


class CancelOrderSchema(ma.Schema):
    reason = _text(500, required=True, metadata={"example": "customer changed their mind"})


class CommandOutcomeSchema(ma.Schema):
    order_id = ma.fields.UUID(required=True)
    version = ma.fields.Integer(required=True, metadata={"description": "the order's version after the command"})
    position = ma.fields.Integer(
        required=True, metadata={"description": "global position of the last event the command appended"}
    )
