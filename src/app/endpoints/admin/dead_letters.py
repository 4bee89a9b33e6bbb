"""Dead letters: list them, redrive one through an rq job, or discard one (recorded, never deleted)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import url_for
from flask.views import MethodView
from flask_smorest import abort
from rq import Queue
from sqlalchemy import text
from werkzeug.exceptions import NotFound

from app.endpoints.admin import blp
from app.endpoints.admin.jobs import JobSchema, _job
from app.platform.api import ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.validation import EmptySchema, StrictSchema
from app.platform.web import engine, redis_client, request_ids, settings
from workers import deadletters

STATUSES = ["open", "redriven", "discarded"]


class DeadLetterSchema(ResponseSchema):
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


class DiscardSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(1, 500))


_COLUMNS = ", ".join(f for f in DeadLetterSchema().fields)


def _letter(letter_id: int) -> dict[str, Any]:
    with engine().connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = :id"), {"id": letter_id}).first()
    if row is None:
        raise NotFound(f"no dead letter {letter_id}")
    return dict(row._mapping)


@blp.route("/dead-letters")
class DeadLetters(MethodView):
    @blp.arguments(DeadLetterFilterSchema(), location="query")
    @blp.response(200, DeadLetterSchema(many=True))
    @blp.paginate()
    @operation("list_dead_letters")
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
    @operation("get_dead_letter")
    def get(self, letter_id: int) -> Any:
        """Show one dead letter"""
        return _letter(letter_id)


@blp.route("/dead-letters/<int:letter_id>/redrive")
class Redrive(MethodView):
    @blp.arguments(EmptySchema(), required=False)
    @blp.response(202, JobSchema)
    @problem_responses(blp, {404: "no such dead letter"})
    @problem_responses(blp, {409: "the dead letter is not open"})
    @operation("redrive_dead_letter")
    def post(self, _body: dict[str, Any], letter_id: int) -> Any:
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
    @blp.arguments(DiscardSchema())
    @blp.response(200, DeadLetterSchema)
    @problem_responses(blp, {404: "no such dead letter"})
    @problem_responses(blp, {409: "the dead letter is not open"})
    @operation("discard_dead_letter")
    def post(self, data: dict[str, Any], letter_id: int) -> Any:
        """Give up on a dead letter; the record and the reason are kept"""
        letter = _letter(letter_id)
        if not deadletters.discard(engine(), letter_id, data["reason"]):
            abort(409, message=f"dead letter {letter_id} is {letter['status']}")
        return _letter(letter_id)
