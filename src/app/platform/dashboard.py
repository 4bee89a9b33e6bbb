"""rq-dashboard, mounted at /rq, held to the rules of our own routes.

Its views trust their URLs: an unknown job, a registry that does not exist or a page that is not a
number would end in a 500. Each URL variable is checked before its view runs (404 for what cannot
exist), rq's own refusals become 404/409, and its one state-changing GET (requeue all) takes POST
only, as its own page sends it. Authentication and the cross-site refusal (app/platform/auth.py) come first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import redis
from flask import Flask, Response, request
from rq import Queue
from rq.exceptions import InvalidJobOperation, InvalidJobOperationError, NoSuchJobError
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.platform.problems import problem
from app.platform.web import redis_client

log = logging.getLogger(__name__)
REGISTRIES = frozenset({"queued", "failed", "deferred", "started", "finished", "scheduled", "canceled"})
NAME = re.compile(r"[A-Za-z0-9._:\-]{1,200}")
JOB_ID = re.compile(r"[A-Za-z0-9_\-]{1,200}")  # what rq itself accepts as a job id


def _instance(value: Any) -> bool:
    return value == 0  # one Redis is configured: instance 0


def _count(low: int, high: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        digits = str(value)
        return digits.isascii() and digits.isdigit() and len(digits) <= 9 and low <= int(digits) <= high

    return check


CHECKS: dict[str, Callable[[Any], bool]] = {
    "instance_number": _instance,
    "job_id": lambda value: JOB_ID.fullmatch(str(value)) is not None,
    "queue_name": lambda value: NAME.fullmatch(str(value)) is not None,
    "registry_name": lambda value: value in REGISTRIES,
    "order": lambda value: value in ("asc", "dsc"),
    "per_page": _count(1, 1000),
    "page": _count(1, 10_000_000),
}
POST_ONLY = frozenset({"rq_dashboard.requeue_all"})


def install_dashboard(app: Flask, rq_dashboard: ModuleType) -> None:
    """Mount rq-dashboard at /rq with its URL variables checked and its errors as problem+json."""
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")

    @app.before_request
    def _check_dashboard_url() -> None:
        if request.blueprint != "rq_dashboard":
            return
        if request.endpoint in POST_ONLY and request.method != "POST":
            raise MethodNotAllowed(["POST"], "this changes state: POST it (rq-dashboard's button does)")
        for name, value in (request.view_args or {}).items():
            check = CHECKS.get(name)
            if check is not None and not check(value):
                raise NotFound(f"no {name.replace('_', ' ')} {str(value)[:80]!r} here")
        queue = (request.view_args or {}).get("queue_name")
        if queue is not None and queue not in {q.name for q in Queue.all(connection=redis_client())}:
            raise NotFound(f"no queue {queue!r}")

    @app.errorhandler(NoSuchJobError)
    def _no_such_job(exc: NoSuchJobError) -> Response:
        return problem(404, str(exc)[:200])

    def _invalid_operation(exc: Exception) -> Response:
        return problem(409, str(exc)[:200] or "the job is not in a state that allows this")

    for refusal in (InvalidJobOperation, InvalidJobOperationError):
        app.register_error_handler(refusal, _invalid_operation)

    @app.errorhandler(redis.ResponseError)
    def _redis_refused(exc: redis.ResponseError) -> Response:
        """Redis refusing what rq-dashboard asked (compacting a queue emptied meanwhile, say) is a
        conflict with the queue's state; anywhere else it is our bug."""
        if request.blueprint == "rq_dashboard":
            return problem(409, f"Redis refused this for the queue's current state: {str(exc)[:200]}")
        log.error("request failed", exc_info=exc)
        return problem(500, "the server failed to handle this request; it has been logged")
