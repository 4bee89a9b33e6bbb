"""Command payloads as marshmallow schemas; unknown fields are refused (app.platform.validation)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pycountry
from marshmallow import validate
from werkzeug.routing import BaseConverter

from app.eventlog.money import AMOUNT_PATTERN, ISO_4217, InvalidAmount, check_decimal_string
from app.platform.api import ResponseSchema
from app.platform.validation import BoundedList, FullMatch, StrictSchema, identifier, text
from commands.order import MAX_LINES, MAX_QUANTITY

SERVICE_LEVELS = ["standard", "express", "next_day"]
SKU_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}"
SKU = FullMatch(SKU_PATTERN, error="a SKU is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
MAX_STOCK_MOVE = 1_000_000  # units one receipt or adjustment may move


class SkuConverter(BaseConverter):
    """A SKU in a URL path (`/inventory/<sku:sku>`): the line's SKU pattern, so a path that cannot
    name a SKU is a 404 before any view runs."""

    regex = SKU_PATTERN


class Amount(ma.fields.String):
    """Money as a decimal string ("12.50"); floats and exponents are refused so nothing is rounded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metadata = {"pattern": f"^{AMOUNT_PATTERN}$", **self.metadata}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ma.ValidationError('money is a decimal string such as "12.50", not a number')
        try:
            check_decimal_string(value)
        except InvalidAmount as exc:
            raise ma.ValidationError(str(exc)) from exc
        return value


class LineSchema(StrictSchema):
    sku = ma.fields.String(required=True, validate=SKU, metadata={"example": "SKU-1"})
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(1, MAX_QUANTITY), metadata={"example": 2}
    )
    unit_price = Amount(required=True, metadata={"example": "9.99"})


COUNTRIES = sorted(country.alpha_2 for country in pycountry.countries)  # ISO 3166-1 alpha-2
PERSONAL = {"x-personal-data": True}  # sealed under the customer's data key before it is stored


class ShippingAddressSchema(StrictSchema):
    name = text(200, required=True, metadata={"example": "Ada Lovelace", **PERSONAL})
    line1 = text(200, required=True, metadata={"example": "12 St James's Square", **PERSONAL})
    line2 = text(200, load_default=None, allow_none=True, metadata=PERSONAL)
    city = text(100, required=True, metadata={"example": "London", **PERSONAL})
    postal_code = text(20, required=True, metadata={"example": "SW1Y 4JH", **PERSONAL})
    country = ma.fields.String(
        required=True,
        validate=validate.OneOf(COUNTRIES, error="not an ISO 3166-1 alpha-2 country code"),
        metadata={"example": "GB", **PERSONAL},
    )


class PlaceOrderSchema(StrictSchema):
    customer_id = identifier(required=True, metadata={"example": "customer-42"})
    currency = ma.fields.String(
        required=True,
        validate=validate.OneOf(sorted(ISO_4217), error="not an ISO 4217 currency code"),
        metadata={"example": "EUR"},
    )
    items = BoundedList(ma.fields.Nested(LineSchema), required=True, min_length=1, max_length=MAX_LINES)
    email = ma.fields.Email(validate=validate.Length(3, 254), metadata={"example": "ada@example.org", **PERSONAL})
    shipping_address = ma.fields.Nested(ShippingAddressSchema, metadata=PERSONAL)


class PayOrderSchema(StrictSchema):
    amount = Amount(required=True, metadata={"example": "19.98"})
    reference = text(100, required=True, metadata={"example": "psp-7f3a"})


class ShipOrderSchema(StrictSchema):
    carrier = text(100, required=True, metadata={"example": "DHL"})
    tracking_number = text(100, required=True, metadata={"example": "JD0146000033"})
    service_level = ma.fields.String(
        load_default="standard", validate=validate.OneOf(SERVICE_LEVELS), metadata={"example": "express"}
    )


class CancelOrderSchema(StrictSchema):
    reason = text(500, required=True, metadata={"example": "customer changed their mind"})


class CommandOutcomeSchema(ResponseSchema):
    order_id = ma.fields.UUID(required=True)
    version = ma.fields.Integer(required=True, metadata={"description": "the order's version after the command"})
    position = ma.fields.Integer(
        required=True, metadata={"description": "global position of the last event the command appended"}
    )


class ReceiptSchema(StrictSchema):
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(1, MAX_STOCK_MOVE), metadata={"example": 10}
    )
    reference = text(100, required=True, metadata={"example": "delivery-2026-11-29"})


class AdjustmentSchema(StrictSchema):
    quantity = ma.fields.Integer(
        required=True,
        strict=True,
        validate=[
            validate.Range(-MAX_STOCK_MOVE, MAX_STOCK_MOVE),
            validate.NoneOf([0], error="an adjustment changes the stock by at least one unit"),
        ],
        metadata={"example": -2, "description": "units to add (negative: to remove); never below what is reserved"},
    )
    reason = text(500, required=True, metadata={"example": "stocktake: two damaged"})


class StockOutcomeSchema(ResponseSchema):
    sku = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True, metadata={"description": "the SKU's version after the command"})
    position = ma.fields.Integer(
        required=True, metadata={"description": "global position of the last event the command appended"}
    )
