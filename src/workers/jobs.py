"""rq jobs. Each builds what it needs from the environment of the rq worker process."""

from __future__ import annotations

from typing import Any

import structlog
from rq import get_current_job

from app.platform.config import Settings
from app.platform.db import make_engine
from app.platform.logs import configure_logging
from queries.projections import PROJECTIONS
from workers import deadletters
from workers.consumers import consumers
from workers.rebuild import RebuildTracker, rebuild


def redrive_dead_letter(dead_letter_id: int) -> dict[str, Any]:
    """Re-apply a dead letter's event (read from the event store) to its projection."""
    configure_logging()
    job = get_current_job()
    if job is not None:
        structlog.contextvars.bind_contextvars(job_id=job.id, **_request_ids(job))
        job.meta["step"] = "re-applying the event"
        job.save_meta()  # type: ignore[no-untyped-call]
    settings = Settings.from_env()
    engine = make_engine(settings, pool_size=1)
    try:
        return deadletters.redrive(engine, consumers(settings), dead_letter_id)
    finally:
        engine.dispose()


def rebuild_projection(name: str, rebuild_id: int) -> dict[str, Any]:
    """Rebuild a projection into shadow tables and swap them in; progress goes to the job's meta."""
    configure_logging()
    job = get_current_job()
    if job is not None:
        structlog.contextvars.bind_contextvars(job_id=job.id, **_request_ids(job))
    engine = make_engine(Settings.from_env(), pool_size=2)
    tracker = RebuildTracker(engine, name, rebuild_id, job)
    try:
        progress = rebuild(engine, PROJECTIONS[name], on_progress=tracker.update)
        return {"projection": name, "events": progress.done, "rate": round(progress.rate, 1)}
    except Exception as exc:
        tracker.fail(exc)
        raise
    finally:
        engine.dispose()


def _request_ids(job: Any) -> dict[str, Any]:
    """The ids of the HTTP request that enqueued the job (kept in its meta)."""
    return {k: job.meta[k] for k in ("request_id", "correlation_id") if k in job.meta}
