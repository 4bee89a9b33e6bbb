"""The projection_rebuilds table, and its one owner: a row per rebuild asked for, queued to done or failed.

The admin endpoint starts a rebuild here (a queued row, then an rq job); the job reports its progress
and its end here; the row tells how it went long after rq forgot the job. A unique index allows one
active rebuild (queued, replaying, swapping) per projection, so a second request is refused, unless
the first one's job is gone: a worker killed mid-rebuild reports nothing, so `start` looks first.
"""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from workers.replay import Progress

_COLUMNS = "id, status, job_id, events_total, events_done, rate, requested_at, started_at, finished_at, error"
_ENDED = ("failed", "finished", "stopped", "canceled")  # rq job statuses after which nothing reports


class RebuildUnderWay(Exception):
    """The projection already has a queued or running rebuild."""


def start(engine: Engine, queue: Queue, projection: str, meta: dict[str, Any]) -> Job:
    """Record a queued rebuild and enqueue its rq job; raise RebuildUnderWay if one is active."""
    _forget_dead(engine, queue, projection)
    try:
        with engine.begin() as conn:
            rebuild_id = conn.execute(
                text("INSERT INTO projection_rebuilds (projection, status) VALUES (:p, 'queued') RETURNING id"),
                {"p": projection},
            ).scalar_one()
    except IntegrityError as exc:
        raise RebuildUnderWay(f"a rebuild of {projection} is already under way") from exc
    try:
        job = queue.enqueue(
            "workers.jobs.rebuild_projection",
            projection,
            rebuild_id,
            description=f"rebuild projection {projection} from the event store (rebuild {rebuild_id})",
            meta={"projection": projection, "rebuild_id": rebuild_id, "step": "queued", **meta},
            job_timeout=24 * 3600,
            result_ttl=7 * 86400,
            failure_ttl=7 * 86400,
        )
    except Exception:
        fail(engine, rebuild_id, "could not enqueue the job")
        raise
    with engine.begin() as conn:
        conn.execute(text("UPDATE projection_rebuilds SET job_id = :j WHERE id = :id"), {"j": job.id, "id": rebuild_id})
    return job


def report(engine: Engine, rebuild_id: int, step: str, progress: Progress) -> None:
    """Record the step a rebuild reached and its progress (`done` also records when it finished)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE projection_rebuilds SET status = :step, events_total = :total, events_done = :done,"
                " rate = :rate, started_at = coalesce(started_at, now()),"
                " finished_at = CASE WHEN :step = 'done' THEN now() END WHERE id = :id"
            ),
            {"step": step, "total": progress.total, "done": progress.done, "rate": progress.rate, "id": rebuild_id},
        )


def fail(engine: Engine, rebuild_id: int, error: str) -> None:
    """Record that a rebuild failed, and why."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE projection_rebuilds SET status = 'failed', error = :e, finished_at = now() WHERE id = :id"),
            {"e": error[:4000], "id": rebuild_id},
        )


def latest(conn: Connection, projection: str) -> dict[str, Any] | None:
    """The projection's most recent rebuild, whatever its status."""
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM projection_rebuilds WHERE projection = :p ORDER BY id DESC"), {"p": projection}
    ).first()
    return dict(row._mapping) if row else None


def _forget_dead(engine: Engine, queue: Queue, projection: str) -> None:
    """A rebuild whose rq job is gone or ended without reporting (worker killed) is not under way."""
    with engine.connect() as conn:
        active = conn.execute(
            text(
                "SELECT id, job_id FROM projection_rebuilds WHERE projection = :p"
                " AND status IN ('queued', 'replaying', 'swapping')"
            ),
            {"p": projection},
        ).all()
    for rebuild_id, job_id in active:
        try:
            status = Job.fetch(job_id, connection=queue.connection).get_status() if job_id else None
        except NoSuchJobError:
            status = None
        if job_id and (status is None or status.value in _ENDED):
            fail(engine, rebuild_id, f"its job ended without finishing ({status.value if status else 'gone'})")
