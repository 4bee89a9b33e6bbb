"""Background jobs (rq): their status, result and progress."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import url_for
from flask.views import MethodView
from flask_smorest import abort
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.endpoints.admin import blp
from app.platform.api import ResponseSchema, operation
from app.platform.problems import problem_responses
from app.platform.web import redis_client


class JobSchema(ResponseSchema):
    job_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    status_url = ma.fields.String(required=True)
    description = ma.fields.String(allow_none=True)
    result = ma.fields.Raw(allow_none=True)
    error = ma.fields.String(allow_none=True)
    meta = ma.fields.Dict()


@blp.route("/jobs/<string:job_id>")
class BackgroundJob(MethodView):
    @blp.response(200, JobSchema)
    @problem_responses(blp, {404: "no such job"})
    @operation("get_job")
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
