"""Operator endpoints: dead letters (list, redrive through rq, discard) and background job status."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, render_template, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import NotFound

from app.problems import problem_responses
from app.streams import stream_keys
from app.web import engine, redis_client, request_ids, settings, streams_redis
from queries.projections import PROJECTIONS
from workers import deadletters
from workers.relay import current_leader
from workers.retention import stream_status

blp = Blueprint(
    "admin", __name__, url_prefix="/admin", description="Operating orderstream", template_folder="templates"
)

STATUSES = ["open", "redriven", "discarded"]


class DeadLetterSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    projection = ma.fields.String(required=True)
    stream_key = ma.fields.String(required=True)
    entry_id = ma.fields.String(required=True)
    event_id = ma.fields.UUID(allow_none=True)
    stream_id = ma.fields.String(allow_none=True)
    version = ma.fields.Integer(allow_none=True)
    event_type = ma.fields.String(allow_none=True)
    error = ma.fields.String(required=True)
    consumer = ma.fields.String(required=True)
    attempts = ma.fields.Integer(required=True)
    failed_at = ma.fields.DateTime(required=True)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(STATUSES))
    redrive_job_id = ma.fields.String(allow_none=True)
    resolved_at = ma.fields.DateTime(allow_none=True)
    resolution = ma.fields.String(allow_none=True)


class DeadLetterFilterSchema(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))


class DiscardSchema(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, 500))


class JobSchema(ma.Schema):
    job_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    status_url = ma.fields.String(required=True)
    description = ma.fields.String(allow_none=True)
    result = ma.fields.Raw(allow_none=True)
    error = ma.fields.String(allow_none=True)
    meta = ma.fields.Dict()


_COLUMNS = ", ".join(f for f in DeadLetterSchema().fields)


def _letter(letter_id: int) -> dict[str, Any]:
    with engine().connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = :id"), {"id": letter_id}).first()
    if row is None:
        raise NotFound(f"no dead letter {letter_id}")
    return dict(row._mapping)


@blp.route("/dead-letters")
class DeadLetters(MethodView):
    @blp.arguments(DeadLetterFilterSchema, location="query")
    @blp.response(200, DeadLetterSchema(many=True))
    @blp.paginate()
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """List dead letters, newest first"""
        where = "WHERE status = :status" if filters.get("status") else ""
        params = {"status": filters.get("status"), "n": pagination_parameters.page_size}
        with engine().connect() as conn:
            pagination_parameters.item_count = conn.execute(
                text(f"SELECT count(*) FROM dead_letters {where}"), params
            ).scalar_one()
            rows = conn.execute(
                text(f"SELECT {_COLUMNS} FROM dead_letters {where} ORDER BY id DESC LIMIT :n OFFSET :o"),
                {**params, "o": min(pagination_parameters.first_item, 2**62)},
            )
            return [dict(r._mapping) for r in rows]


@blp.route("/dead-letters/<int:letter_id>")
class DeadLetter(MethodView):
    @blp.response(200, DeadLetterSchema)
    @problem_responses(blp, {404: "no such dead letter"})
    def get(self, letter_id: int) -> Any:
        """Show one dead letter"""
        return _letter(letter_id)


@blp.route("/dead-letters/<int:letter_id>/redrive")
class Redrive(MethodView):
    @blp.response(202, JobSchema)
    @problem_responses(blp, {404: "no such dead letter"})
    @problem_responses(blp, {409: "the dead letter is not open"})
    def post(self, letter_id: int) -> Any:
        """Re-process a dead letter in the background (an rq job, visible in rq-dashboard)"""
        letter = _letter(letter_id)
        if letter["status"] != "open":
            abort(409, message=f"dead letter {letter_id} is {letter['status']}")
        description = (
            f"redrive dead letter {letter_id}: {letter['event_type']} v{letter['version']} "
            f"of {letter['stream_id']} into {letter['projection']}"
        )
        job = Queue(settings().rq_queue, connection=redis_client()).enqueue(
            "workers.jobs.redrive_dead_letter",
            letter_id,
            description=description,
            meta={"dead_letter_id": letter_id, "projection": letter["projection"], **request_ids()},
            result_ttl=7 * 86400,
            failure_ttl=7 * 86400,
        )
        with engine().begin() as conn:
            conn.execute(
                text("UPDATE dead_letters SET redrive_job_id = :j WHERE id = :id"), {"j": job.id, "id": letter_id}
            )
        return _job(job), 202, {"Location": url_for("admin.BackgroundJob", job_id=job.id)}


@blp.route("/dead-letters/<int:letter_id>/discard")
class Discard(MethodView):
    @blp.arguments(DiscardSchema)
    @blp.response(200, DeadLetterSchema)
    @problem_responses(blp, {404: "no such dead letter"})
    @problem_responses(blp, {409: "the dead letter is not open"})
    def post(self, data: dict[str, Any], letter_id: int) -> Any:
        """Give up on a dead letter; the record and the reason are kept"""
        letter = _letter(letter_id)
        if not deadletters.discard(engine(), letter_id, data["reason"]):
            abort(409, message=f"dead letter {letter_id} is {letter['status']}")
        return _letter(letter_id)


@blp.route("/jobs/<string:job_id>")
class BackgroundJob(MethodView):
    @blp.response(200, JobSchema)
    @problem_responses(blp, {404: "no such job"})
    def get(self, job_id: str) -> Any:
        """Show a background job's status, result and progress"""
        try:
            return _job(Job.fetch(job_id, connection=redis_client()))
        except (NoSuchJobError, ValueError):  # rq refuses ids it could never have made
            abort(404, message=f"no job {job_id}")


def _job(job: Job) -> dict[str, Any]:
    status = job.get_status(refresh=True)
    failure = job.latest_result()
    return {
        "job_id": job.id,
        "status": status.value if status else "unknown",
        "status_url": url_for("admin.BackgroundJob", job_id=job.id),
        "description": job.description,
        "result": job.return_value(),
        "error": (failure.exc_string or "").strip().splitlines()[-1] if failure and failure.exc_string else None,
        "meta": job.get_meta(refresh=True),
    }


class RebuildSchema(ma.Schema):
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


class ProjectionSchema(ma.Schema):
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


_REBUILD_COLUMNS = ", ".join(RebuildSchema().fields)


@blp.route("/projections")
class Projections(MethodView):
    @blp.response(200, ProjectionSchema(many=True))
    def get(self) -> Any:
        """Each projection: its consumer group, how far it got, and its latest rebuild"""
        return self.get_data()

    @staticmethod
    def get_data() -> list[dict[str, Any]]:
        ages: dict[str, float] = {}
        for stream in streams_status():
            for group in stream["groups"]:
                ages[group["name"]] = max(ages.get(group["name"], 0.0), group["oldest_unprocessed_age_s"])
        with engine().connect() as conn:
            events = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
            out = []
            for name, projection in PROJECTIONS.items():
                tracked, applied = conn.execute(
                    text(
                        "SELECT count(*), coalesce(sum(version), 0) FROM projection_checkpoints WHERE projection = :p"
                    ),
                    {"p": name},
                ).one()
                rebuild = conn.execute(
                    text(f"SELECT {_REBUILD_COLUMNS} FROM projection_rebuilds WHERE projection = :p ORDER BY id DESC"),
                    {"p": name},
                ).first()
                out.append(
                    {
                        "name": name,
                        "consumer_group": name,
                        "tables": list(projection.tables),
                        "orders_tracked": tracked,
                        "events_applied": applied,
                        "lag_events": max(events - applied, 0),
                        "lag_seconds": ages.get(name, 0.0),
                        "rebuild": dict(rebuild._mapping) if rebuild else None,
                    }
                )
            return out


@blp.route("/projections/<string:name>/rebuild")
class Rebuild(MethodView):
    @blp.response(202, JobSchema)
    @problem_responses(blp, {404: "no such projection"})
    @problem_responses(blp, {409: "a rebuild of this projection is already under way"})
    def post(self, name: str) -> Any:
        """Rebuild a projection from the event store in the background (shadow tables, then an atomic swap)"""
        if name not in PROJECTIONS:
            raise NotFound(f"no projection {name!r}; there are {', '.join(PROJECTIONS)}")
        _forget_dead_rebuilds(name)
        try:
            with engine().begin() as conn:
                rebuild_id = conn.execute(
                    text("INSERT INTO projection_rebuilds (projection, status) VALUES (:p, 'queued') RETURNING id"),
                    {"p": name},
                ).scalar_one()
        except IntegrityError:
            abort(409, message=f"a rebuild of {name} is already under way: see GET /admin/projections")
        try:
            job = _enqueue_rebuild(name, rebuild_id)
        except Exception:
            _mark_rebuild(rebuild_id, "failed", "could not enqueue the job")
            raise
        with engine().begin() as conn:
            conn.execute(
                text("UPDATE projection_rebuilds SET job_id = :j WHERE id = :id"), {"j": job.id, "id": rebuild_id}
            )
        return _job(job), 202, {"Location": url_for("admin.BackgroundJob", job_id=job.id)}


def _enqueue_rebuild(name: str, rebuild_id: int) -> Job:
    return Queue(settings().rq_queue, connection=redis_client()).enqueue(
        "workers.jobs.rebuild_projection",
        name,
        rebuild_id,
        description=f"rebuild projection {name} from the event store (rebuild {rebuild_id})",
        meta={"projection": name, "rebuild_id": rebuild_id, "step": "queued", **request_ids()},
        job_timeout=24 * 3600,
        result_ttl=7 * 86400,
        failure_ttl=7 * 86400,
    )


def _mark_rebuild(rebuild_id: int, status: str, error: str) -> None:
    with engine().begin() as conn:
        conn.execute(
            text("UPDATE projection_rebuilds SET status = :s, error = :e, finished_at = now() WHERE id = :id"),
            {"s": status, "e": error, "id": rebuild_id},
        )


def _forget_dead_rebuilds(name: str) -> None:
    """A rebuild whose rq job is gone or ended without reporting (worker killed) is not under way."""
    with engine().connect() as conn:
        active = conn.execute(
            text(
                "SELECT id, job_id FROM projection_rebuilds WHERE projection = :p"
                " AND status IN ('queued', 'replaying', 'swapping')"
            ),
            {"p": name},
        ).all()
    for row in active:
        try:
            status = Job.fetch(row.job_id, connection=redis_client()).get_status() if row.job_id else None
        except NoSuchJobError:
            status = None
        if row.job_id and (status is None or status.value in ("failed", "finished", "stopped", "canceled")):
            _mark_rebuild(row.id, "failed", f"its job ended without finishing ({status.value if status else 'gone'})")


class ConsumerSchema(ma.Schema):
    name = ma.fields.String(required=True)
    pending = ma.fields.Integer(required=True)
    idle_ms = ma.fields.Integer(required=True)


class GroupSchema(ma.Schema):
    name = ma.fields.String(required=True)
    consumers = ma.fields.List(ma.fields.Nested(ConsumerSchema), required=True)
    pending = ma.fields.Integer(required=True)
    last_delivered_id = ma.fields.String(required=True)
    lag = ma.fields.Integer(required=True, metadata={"description": "entries not yet delivered to the group"})
    oldest_unprocessed_age_s = ma.fields.Float(required=True)


class StreamSchema(ma.Schema):
    key = ma.fields.String(required=True)
    length = ma.fields.Integer(required=True)
    last_entry_id = ma.fields.String(allow_none=True)
    groups = ma.fields.List(ma.fields.Nested(GroupSchema), required=True)


class RelaySchema(ma.Schema):
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
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE o.entry_ms IS NULL) AS backlog,"
                " count(*) FILTER (WHERE o.entry_ms IS NOT NULL) AS retained,"
                " extract(epoch FROM now() - min(e.recorded_at) FILTER (WHERE o.entry_ms IS NULL)) AS age"
                " FROM outbox o JOIN events e ON e.position = o.position"
            )
        ).one()
        return {
            "leader": current_leader(conn),
            "backlog": row.backlog,
            "retained": row.retained,
            "oldest_unpublished_age_s": float(row.age) if row.age is not None else None,
        }


@blp.route("/streams")
class Streams(MethodView):
    @blp.response(200, StreamSchema(many=True))
    def get(self) -> Any:
        """Each partition stream: length, consumer groups, consumers, pending, lag, oldest pending age"""
        return streams_status()


@blp.route("/relay")
class RelayStatus(MethodView):
    @blp.response(200, RelaySchema)
    def get(self) -> Any:
        """The relay: who leads, and the outbox backlog"""
        return relay_status()


@blp.route("")
class Overview(MethodView):
    @blp.doc(responses={200: {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}})
    def get(self) -> Any:
        """The same at a glance, as a page for people"""
        return Response(
            render_template(
                "admin.html", relay=relay_status(), streams=streams_status(), projections=Projections().get_data()
            ),
            mimetype="text/html",
        )
