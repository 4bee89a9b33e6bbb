"""A customer's personal data, exported (GET): everything held about it, opened."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import g
from flask.views import MethodView
from werkzeug.exceptions import Forbidden

from app.eventlog import keys
from app.eventlog.keys import web_keyring
from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.web import engine
from queries import orders
from queries.personal import reveal
from queries.schemas import PersonalFieldsSchema

blp = Blueprint("customer-queries", __name__, description="A customer's rights over its personal data")


class HeldOrderSchema(PersonalFieldsSchema):
    order_id = ma.fields.UUID(required=True)
    created_at = ma.fields.DateTime(required=True)


class ExportSchema(ResponseSchema):
    customer_id = ma.fields.String(required=True)
    erased_at = ma.fields.DateTime(allow_none=True, required=True, metadata={"description": "its first erasure"})
    erased_by = ma.fields.String(allow_none=True, required=True)
    orders = ma.fields.List(
        ma.fields.Nested(HeldOrderSchema),
        required=True,
        metadata={"description": "its orders with personal data, newest first"},
    )


@blp.route("/customers/<string:customer_id>/personal-data")
class PersonalDataExport(MethodView):
    @blp.response(200, ExportSchema)
    @problem_responses(blp, {403: "this token may not see personal data"})
    @operation("export_personal_data")
    def get(self, customer_id: str) -> Any:
        """Export a customer's personal data

        Everything held about the customer, opened: the personal data of each of its orders (erased
        ones show `personal_data: erased`). The customer's own token, an admin token, or one granted
        personal data.
        """
        if not g.principal.may_see_personal_data_of(customer_id):
            raise Forbidden("personal data needs the customer's own token, an admin token, or one granted it")
        with engine().connect() as conn:
            held = orders.personal_data_of(conn, customer_id)
            reveal(conn, web_keyring(), g.principal, held)
            erasure = keys.erased(conn, customer_id)
        erased_at, erased_by = erasure or (None, None)
        return {"customer_id": customer_id, "erased_at": erased_at, "erased_by": erased_by, "orders": held}
