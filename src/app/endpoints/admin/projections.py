"""Projections: how far each got, and rebuilding one from the event store through an rq job."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import url_for
from flask.views import MethodView
from flask_smorest import abort
from rq import Queue
from werkzeug.exceptions import NotFound

from app.endpoints.admin import blp
from app.endpoints.admin.jobs import JobSchema, _job
from app.endpoints.admin.status import streams_status
from app.eventlog import store as eventstore
from app.platform.api import ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.validation import EmptySchema
from app.platform.web import engine, redis_client, request_ids, settings
from queries.projections import PROJECTIONS
from workers import checkpoints, rebuild_records


class RebuildSchema(ResponseSchema):
    id = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    job_id = ma.fields.String(allow_none=True)
    events_total = ma.fields.Integer(required=True)
    events_done = ma.fields.Integer(required=True)
    rate = ma.fields.Float(allow_none=True, metadata={"description": "events per second"})
    requested_at = ma.fields.DateTime(required=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    error = ma.fields.String(allow_none=True)


class ProjectionSchema(ResponseSchema):
    name = ma.fields.String(required=True)
    consumer_group = ma.fields.String(required=True)
    tables = ma.fields.List(ma.fields.String(), required=True)
    orders_tracked = ma.fields.Integer(required=True, metadata={"description": "orders with a checkpoint"})
    events_applied = ma.fields.Integer(required=True, metadata={"description": "events folded in (or skipped)"})
    lag_events = ma.fields.Integer(required=True, metadata={"description": "events in the log not yet folded in"})
    lag_seconds = ma.fields.Float(
        required=True, metadata={"description": "age of the oldest stream entry the group has not processed"}
    )
    rebuild = ma.fields.Nested(RebuildSchema, allow_none=True, metadata={"description": "the latest rebuild"})


@blp.route("/projections")
class Projections(MethodView):
    @blp.response(200, ProjectionSchema(many=True))
    @operation("list_projections")
    def get(self) -> Any:
        """Each projection: its consumer group, how far it got, and its latest rebuild"""
        return projection_states()


def projection_states() -> list[dict[str, Any]]:
    """Each projection: tables, orders tracked, events applied, lag, latest rebuild."""
    ages: dict[str, float] = {}
    for stream in streams_status():
        for group in stream["groups"]:
            ages[group["name"]] = max(ages.get(group["name"], 0.0), group["oldest_unprocessed_age_s"])
    with engine().connect() as conn:
        events = eventstore.count_events(conn)
        out = []
        for name, projection in PROJECTIONS.items():
            tracked, applied = checkpoints.summary(conn, name)
            out.append(
                {
                    "name": name,
                    "consumer_group": name,
                    "tables": list(projection.tables),
                    "orders_tracked": tracked,
                    "events_applied": applied,
                    "lag_events": max(events - applied, 0),
                    "lag_seconds": ages.get(name, 0.0),
                    "rebuild": rebuild_records.latest(conn, name),
                }
            )
        return out


@blp.route("/projections/<string:name>/rebuild")
class Rebuild(MethodView):
    @blp.arguments(EmptySchema(), required=False)
    @blp.response(202, JobSchema)
    @problem_responses(blp, {404: "no such projection"})
    @problem_responses(blp, {409: "a rebuild of this projection is already under way"})
    @operation("rebuild_projection")
    def post(self, _body: dict[str, Any], name: str) -> Any:
        """Rebuild a projection from the event store in the background (shadow tables, then an atomic swap)"""
        if name not in PROJECTIONS:
            raise NotFound(f"no projection {name!r}; there are {', '.join(PROJECTIONS)}")
        queue = Queue(settings().rq_queue, connection=redis_client())
        try:
            job = rebuild_records.start(engine(), queue, name, request_ids())
        except rebuild_records.RebuildUnderWay:
            abort(409, message=f"a rebuild of {name} is already under way: see GET /admin/projections")
        return _job(job), 202, {"Location": url_for("admin.BackgroundJob", job_id=job.id)}
