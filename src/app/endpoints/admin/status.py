"""The relay and the streams, as JSON and, with the projections, as one page for people."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, render_template
from flask.views import MethodView

from app.endpoints.admin import blp
from app.eventlog.streams import stream_keys
from app.platform.api import ResponseSchema, operation
from app.platform.web import engine, settings, streams_redis
from workers import outbox
from workers.relay import current_leader
from workers.retention import stream_status


class ConsumerSchema(ResponseSchema):
    name = ma.fields.String(required=True)
    pending = ma.fields.Integer(required=True)
    idle_ms = ma.fields.Integer(required=True)


class GroupSchema(ResponseSchema):
    name = ma.fields.String(required=True)
    consumers = ma.fields.List(ma.fields.Nested(ConsumerSchema), required=True)
    pending = ma.fields.Integer(required=True)
    last_delivered_id = ma.fields.String(required=True)
    lag = ma.fields.Integer(required=True, metadata={"description": "entries not yet delivered to the group"})
    oldest_unprocessed_age_s = ma.fields.Float(required=True)


class StreamSchema(ResponseSchema):
    key = ma.fields.String(required=True)
    length = ma.fields.Integer(required=True)
    last_entry_id = ma.fields.String(allow_none=True)
    groups = ma.fields.List(ma.fields.Nested(GroupSchema), required=True)


class RelaySchema(ResponseSchema):
    leader = ma.fields.String(allow_none=True, metadata={"description": "the relay holding the leader lock"})
    backlog = ma.fields.Integer(required=True, metadata={"description": "committed events not yet published"})
    retained = ma.fields.Integer(
        required=True, metadata={"description": "published events not yet acknowledged by every group"}
    )
    oldest_unpublished_age_s = ma.fields.Float(allow_none=True)


def streams_status() -> list[dict[str, Any]]:
    keys = stream_keys(settings().key_prefix, settings().stream_partitions)
    return [stream_status(streams_redis(), key) for key in keys]


def relay_status() -> dict[str, Any]:
    with engine().connect() as conn:
        return {"leader": current_leader(conn), **outbox.status(conn)}


@blp.route("/streams")
class Streams(MethodView):
    @blp.response(200, StreamSchema(many=True))
    @operation("list_streams")
    def get(self) -> Any:
        """Each partition stream: length, consumer groups, consumers, pending, lag, oldest pending age"""
        return streams_status()


@blp.route("/relay")
class RelayStatus(MethodView):
    @blp.response(200, RelaySchema)
    @operation("get_relay")
    def get(self) -> Any:
        """The relay: who leads, and the outbox backlog"""
        return relay_status()


@blp.route("")
class Overview(MethodView):
    @blp.doc(responses={200: {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}})
    @operation("admin_page")
    def get(self) -> Any:
        """The same at a glance, as a page for people"""
        from app.endpoints.admin.fulfilment import summary
        from app.endpoints.admin.processes import process_states
        from app.endpoints.admin.projections import projection_states
        from app.endpoints.admin.webhooks import overview

        page = render_template(
            "admin.html",
            health=process_states(),
            relay=relay_status(),
            streams=streams_status(),
            projections=projection_states(),
            fulfilment=summary(),
            webhooks=overview(),
        )
        return Response(page, mimetype="text/html")
