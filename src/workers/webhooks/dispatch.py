"""The `webhooks` consumer group: each event an enabled endpoint wants becomes a pending delivery,
recorded in the transaction of the group's checkpoints (so once per endpoint and event), and the
pump (an rq cron job, every second) queues the due ones as rq jobs, in version order per stream.

The jobs go to a queue of their own (`<ORDERSTREAM_RQ_QUEUE>-webhooks`), served by the Procfile's
`sender` (rq's SimpleWorker: no fork per job): a flood of deliveries, or a receiver that makes each
wait 5 s, never delays the payment deadlines or the upkeep, and a long rebuild never delays them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import Connection

from app.eventlog.envelope import RecordedEvent
from app.eventlog.projection import Projection
from app.platform.config import Settings
from app.platform.db import make_engine
from workers.webhooks import deliveries, endpoints
from workers.webhooks.send import enqueue, policy

GROUP = "webhooks"
PUMPED = 2000  # deliveries queued per run of the pump (every second) at most


def apply(conn: Connection, events: Sequence[RecordedEvent], new_streams: Collection[str] = ()) -> None:
    wanted = endpoints.matching(conn, sorted({e.type for e in events}))
    if not wanted:
        return
    for event in events:
        for enabled in (True, False):  # a disabled endpoint's deliveries are recorded held
            ids = [
                w["id"] for w in wanted
                if w["enabled"] is enabled and ("*" in w["event_types"] or event.type in w["event_types"])
                and event.recorded_at >= w["created_at"]
            ]  # fmt: skip
            deliveries.record(conn, ids, event, held=not enabled)


DISPATCH = Projection(name=GROUP, tables=("webhook_deliveries",), apply=apply)


def sender_queue(settings: Settings) -> str:
    """The rq queue webhook deliveries are sent from."""
    return f"{settings.rq_queue}-webhooks"


def pump_deliveries() -> int:
    """The rq cron job: queue every due delivery as an rq job (visible in rq-dashboard); returns how many."""
    settings = Settings.from_env()
    engine = make_engine(settings, pool_size=1)
    client = Redis.from_url(settings.redis_url)
    queue = Queue(sender_queue(settings), connection=client)

    def waiting(job_ids: list[str]) -> set[str]:
        """Those jobs still in the queue (a job Redis lost, or whose place in the queue it lost, is not)."""
        jobs = Job.fetch_many(job_ids, connection=client)
        queued = [job.id for job in jobs if job is not None and job.get_status(refresh=False) == JobStatus.QUEUED]
        with client.pipeline(transaction=False) as pipe:
            for job_id in queued:
                pipe.lpos(queue.key, job_id)
            places = pipe.execute()
        return {job_id for job_id, place in zip(queued, places, strict=True) if place is not None}

    try:
        with engine.begin() as conn:
            due = deliveries.take_due(conn, policy(settings), waiting, PUMPED)
        if due:  # after the commit: a job that runs at once finds its row queued
            enqueue(queue, due, settings)
        return len(due)
    finally:
        client.close()
        engine.dispose()
