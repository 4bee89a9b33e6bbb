"""Webhook endpoints: register one (its secret shown once), list, show, change, remove; their
deliveries, and sending one again. README's Webhooks section says how a receiver verifies them."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from werkzeug.exceptions import NotFound, UnprocessableEntity

from app.endpoints.admin import blp
from app.eventlog.events import EVENT_TYPES
from app.eventlog.keys import web_keyring
from app.platform.api import ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.validation import BoundedList, EmptySchema, StrictSchema
from app.platform.web import engine, settings
from workers.webhooks import deliveries, endpoints
from workers.webhooks.urls import RefusedUrl, resolve

TYPES = ["*", *sorted(EVENT_TYPES)]
URL_LENGTH, DESCRIPTION_LENGTH = ma.validate.Length(1, 2000), ma.validate.Length(0, 500)


class EndpointSchema(ResponseSchema):
    id = ma.fields.UUID(required=True)
    url = ma.fields.String(required=True)
    event_types = ma.fields.List(ma.fields.String(), required=True)
    description = ma.fields.String(required=True)
    enabled = ma.fields.Boolean(required=True)
    disabled_reason = ma.fields.String(allow_none=True, required=True)
    failing_since = ma.fields.DateTime(
        allow_none=True, required=True,
        metadata={"description": "since when every delivery failed (none since); a day of it disables the endpoint"},
    )  # fmt: skip
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)


class DeliverySchema(ResponseSchema):
    id = ma.fields.Integer(required=True)
    endpoint_id = ma.fields.UUID(required=True)
    event_id = ma.fields.UUID(required=True, metadata={"description": "webhook-id is derived from it"})
    event_type = ma.fields.String(required=True)
    stream_id = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    position = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(deliveries.STATUSES))
    attempts = ma.fields.Integer(required=True)
    job_id = ma.fields.String(allow_none=True, required=True, metadata={"description": "the last rq job"})
    last_status_code = ma.fields.Integer(allow_none=True, required=True)
    last_error = ma.fields.String(allow_none=True, required=True)
    last_attempt_at = ma.fields.DateTime(allow_none=True, required=True)
    next_attempt_at = ma.fields.DateTime(
        allow_none=True, required=True, metadata={"description": "when it is sent (again); none once it is settled"}
    )
    created_at = ma.fields.DateTime(required=True)
    delivered_at = ma.fields.DateTime(allow_none=True, required=True)


class DeliveryFilterSchema(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(deliveries.STATUSES))


class RegisteredSchema(EndpointSchema):
    secret = ma.fields.String(
        required=True, metadata={"description": "whsec_…: shown this once; verify each delivery's signature with it"}
    )


class NewEndpointSchema(StrictSchema):
    url = ma.fields.String(
        required=True, validate=URL_LENGTH, metadata={"example": "https://erp.example.com/hooks/orderstream"}
    )
    event_types = BoundedList(
        ma.fields.String(validate=ma.validate.OneOf(TYPES)), required=True, min_length=1, max_length=len(TYPES)
    )
    description = ma.fields.String(validate=DESCRIPTION_LENGTH, load_default="")


class EndpointChangeSchema(StrictSchema):
    url = ma.fields.String(validate=URL_LENGTH)
    event_types = BoundedList(ma.fields.String(validate=ma.validate.OneOf(TYPES)), min_length=1, max_length=len(TYPES))
    description = ma.fields.String(validate=DESCRIPTION_LENGTH)
    enabled = ma.fields.Boolean()


def _endpoint(endpoint_id: Any) -> dict[str, Any]:
    with engine().connect() as conn:
        row = endpoints.find(conn, str(endpoint_id))
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return row


def overview() -> list[dict[str, Any]]:
    """Each endpoint and its deliveries by status, for the admin page."""
    with engine().connect() as conn:
        return endpoints.overview(conn)


def checked(url: str) -> str:
    try:
        resolve(url, settings().webhooks_allow_private)
    except RefusedUrl as exc:
        raise UnprocessableEntity(str(exc)) from None
    return url


@blp.route("/webhooks")
class Webhooks(MethodView):
    @blp.arguments(NewEndpointSchema())
    @blp.response(201, RegisteredSchema)
    @problem_responses(blp, {422: "the body does not validate, or the URL may not be called"})
    @operation("register_webhook")
    def post(self, data: dict[str, Any]) -> Any:
        """Register a webhook endpoint (its secret is shown once)"""
        url = checked(data["url"])
        with engine().begin() as conn:
            row, secret = endpoints.register(conn, web_keyring(), url, data["event_types"], data["description"])
        return {**row, "secret": secret}

    @blp.response(200, EndpointSchema(many=True))
    @blp.paginate()
    @operation("list_webhooks")
    def get(self, pagination_parameters: Any) -> Any:
        """List webhook endpoints"""
        with engine().connect() as conn:
            rows, total = endpoints.page(
                conn, min(pagination_parameters.first_item, 2**62), pagination_parameters.page_size
            )
        pagination_parameters.item_count = total
        return rows


@blp.route("/webhooks/<uuid:endpoint_id>")
class Webhook(MethodView):
    @blp.response(200, EndpointSchema)
    @problem_responses(blp, {404: "no such webhook endpoint"})
    @operation("get_webhook")
    def get(self, endpoint_id: Any) -> Any:
        """Show a webhook endpoint"""
        return _endpoint(endpoint_id)

    @blp.arguments(EndpointChangeSchema())
    @blp.response(200, EndpointSchema)
    @problem_responses(blp, {404: "no such webhook endpoint", 422: "the body does not validate"})
    @operation("update_webhook")
    def patch(self, data: dict[str, Any], endpoint_id: Any) -> Any:
        """Change a webhook endpoint: enable or disable it, its event types, URL or description"""
        if "url" in data:
            checked(data["url"])
        with engine().begin() as conn:
            row = endpoints.update(conn, str(endpoint_id), data)
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return row

    @blp.arguments(EmptySchema(), required=False)
    @blp.response(204)
    @problem_responses(blp, {404: "no such webhook endpoint"})
    @operation("delete_webhook")
    def delete(self, _body: dict[str, Any], endpoint_id: Any) -> Any:
        """Remove a webhook endpoint and its deliveries"""
        with engine().begin() as conn:
            if not endpoints.remove(conn, str(endpoint_id)):
                raise NotFound(f"no webhook endpoint {endpoint_id}")
        return ""


@blp.route("/webhooks/<uuid:endpoint_id>/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryFilterSchema(), location="query")
    @blp.response(200, DeliverySchema(many=True))
    @blp.paginate()
    @problem_responses(blp, {404: "no such webhook endpoint"})
    @operation("list_webhook_deliveries")
    def get(self, filters: dict[str, Any], pagination_parameters: Any, endpoint_id: Any) -> Any:
        """List an endpoint's deliveries, newest event first"""
        _endpoint(endpoint_id)
        with engine().connect() as conn:
            rows, total = deliveries.page(
                conn, str(endpoint_id), filters.get("status"), min(pagination_parameters.first_item, 2**62),
                pagination_parameters.page_size,
            )  # fmt: skip
        pagination_parameters.item_count = total
        return rows


@blp.route("/webhooks/<uuid:endpoint_id>/deliveries/<int:delivery_id>/redeliver")
class Redeliver(MethodView):
    @blp.arguments(EmptySchema(), required=False)
    @blp.response(202, DeliverySchema)
    @problem_responses(blp, {404: "no such webhook endpoint, or no such delivery of it"})
    @operation("redeliver_webhook")
    def post(self, _body: dict[str, Any], endpoint_id: Any, delivery_id: int) -> Any:
        """Send a delivery again (within a second, by an rq job), with a fresh round of retries"""
        with engine().begin() as conn:
            row = deliveries.redeliver(conn, str(endpoint_id), min(delivery_id, 2**62))
        if row is None:
            raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
        return row
