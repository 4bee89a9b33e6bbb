"""Dead letters: list them, redrive one through an rq job, or discard one (recorded, never deleted)."""

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


def _letter(letter_id: int) -> dict[str, Any]:
    letter = deadletters.find(engine(), letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    return letter


@blp.route("/dead-letters")
class DeadLetters(MethodView):
    @blp.arguments(DeadLetterFilterSchema(), location="query")
    @blp.response(200, DeadLetterSchema(many=True))
    @blp.paginate()
    @operation("list_dead_letters")
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """List dead letters, newest first"""
        offset = min(pagination_parameters.first_item, 2**62)
        total, letters = deadletters.page(engine(), filters.get("status"), pagination_parameters.page_size, offset)
        pagination_parameters.item_count = total
        return letters


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
        queue = Queue(settings().rq_queue, connection=redis_client())
        job = deadletters.enqueue_redrive(engine(), queue, letter, request_ids())
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
