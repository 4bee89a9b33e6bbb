"""rq jobs. Each builds what it needs from the environment of the rq worker process."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from app.config import Settings
from app.db import make_engine
from queries.projector import PROJECTIONS
from workers import deadletters


def redrive_dead_letter(dead_letter_id: int) -> dict[str, Any]:
    """Re-apply a dead letter's event (read from the event store) to its projection."""
    job = get_current_job()
    if job is not None:
        job.meta["step"] = "re-applying the event"
        job.save_meta()  # type: ignore[no-untyped-call]
    engine = make_engine(Settings.from_env(), pool_size=1)
    try:
        return deadletters.redrive(engine, PROJECTIONS, dead_letter_id)
    finally:
        engine.dispose()
