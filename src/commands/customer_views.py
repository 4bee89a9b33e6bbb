"""Erasing a customer's personal data (DELETE): the customer itself, an admin, or a writer token
granted personal data."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import g
from flask.views import MethodView
from werkzeug.exceptions import Forbidden

from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.validation import EmptySchema
from app.platform.web import engine, event_metadata
from commands.erasure import erase_personal_data

blp = Blueprint("customer-commands", __name__, description="A customer's rights over its personal data")


class ErasureSchema(ResponseSchema):
    customer_id = ma.fields.String(required=True)
    personal_data = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(["erased", "none"]),
        metadata={"description": "erased: its data keys are destroyed; none: it never had personal data"},
    )
    erased_at = ma.fields.DateTime(allow_none=True, required=True, metadata={"description": "the first erasure"})
    erased_by = ma.fields.String(allow_none=True, required=True)
    keys_destroyed = ma.fields.Integer(required=True, metadata={"description": "by this request (0: done before)"})


def may_handle_personal_data(customer_id: str) -> bool:
    principal = g.principal
    return principal.role == "admin" or principal.personal_data or principal.customer_id == customer_id


@blp.route("/customers/<string:customer_id>/personal-data")
class PersonalData(MethodView):
    @blp.arguments(EmptySchema(), required=False)  # no body: anything sent is refused, as for every command
    @blp.response(200, ErasureSchema)
    @problem_responses(blp, {403: "this token may not handle personal data", 422: "a body was sent"})
    @operation("erase_personal_data")
    def delete(self, _body: dict[str, Any], customer_id: str) -> Any:
        """Erase a customer's personal data

        Destroys the customer's data keys and records `CustomerDataErased` (no personal data in it):
        every order, event, history and rebuilt projection then shows its personal fields as null,
        with `personal_data: erased`, for good. Orders, totals and statistics stay. Idempotent.
        """
        if not may_handle_personal_data(customer_id):
            raise Forbidden("erasing personal data needs the customer's own token, an admin token, or one granted it")
        erasure = erase_personal_data(engine(), customer_id, event_metadata())
        return {
            "customer_id": customer_id,
            "personal_data": "erased" if erasure.erased_at is not None else "none",
            "erased_at": erasure.erased_at,
            "erased_by": erasure.erased_by,
            "keys_destroyed": len(erasure.key_ids),
        }
