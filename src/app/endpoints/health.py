"""Liveness and readiness, for load balancers and orchestrators (public, no token)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from app.platform.api import Blueprint, ResponseSchema, operation
from app.platform.db import ping
from app.platform.problems import problem_responses
from app.platform.schema import current_revision, head_revision
from app.platform.web import engine, redis_client, settings

blp = Blueprint("health", __name__, description="Health checks")


class ReadinessSchema(ResponseSchema):
    ready = ma.fields.Boolean(required=True)
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True)


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ReadinessSchema)
    @operation("liveness")
    def get(self) -> Any:
        """The process is alive (checks nothing else)"""
        return {"ready": True, "checks": {}}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ReadinessSchema)
    @problem_responses(blp, {503: "PostgreSQL or Redis unreachable, or migrations not applied"})
    @operation("readiness")
    def get(self) -> Any:
        """PostgreSQL and Redis reachable, database schema at the newest migration"""
        checks = {"postgresql": _postgres(), "redis": _redis()}
        if checks["postgresql"] == "ok":
            checks["migrations"] = _migrations()
        ready = all(v == "ok" for v in checks.values())
        return {"ready": ready, "checks": checks}, 200 if ready else 503


def _postgres() -> str:
    try:
        ping(engine())
        return "ok"
    except Exception as exc:  # reported, not raised: this endpoint exists to say what is wrong
        return f"unreachable: {type(exc).__name__}"


def _redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


def _migrations() -> str:
    head, current = head_revision(settings().database_url), current_revision(engine())
    return "ok" if current == head else f"at {current}, newest is {head}: run orderstream migrate"
