"""Upkeep: keeping Redis and PostgreSQL bounded, as rq jobs enqueued by rq's cron scheduler.

`orderstream upkeep` (a Procfile line) runs rq's CronScheduler, which enqueues the jobs below on the
rq queue, where the Procfile's rq worker runs them: trimming every ORDERSTREAM_RETENTION_INTERVAL_MS
(rounded up to whole seconds: rq cron counts in seconds), the purge of expired Idempotency-Keys every
minute (an expired key is free to use again at once: the purge only keeps the table small). Every
second, the fulfilment's payment deadlines are fired (workers/fulfilment/deadlines.py) and the
webhook deliveries due are queued as rq jobs (workers/webhooks/dispatch.py; that job runs on the
senders' queue); every minute, settled webhook deliveries older than ORDERSTREAM_WEBHOOKS_KEEP_S
are purged. None of it depends on
the relay, or on any one process.

Every job is idempotent and safe to run twice at once (two instances each run a scheduler, each
enqueueing its own): trimming removes only what every group acknowledged, whoever computes it, and
removing it twice removes nothing more; the purge deletes only expired keys, skipping any that a
concurrent purge holds; deadlines and deliveries are taken with SKIP LOCKED.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rq.cron import CronScheduler
from sqlalchemy import Engine

from app.eventlog.streams import StreamsClient, format_entry_id, stream_keys, streams_client
from app.platform.config import Settings
from app.platform.db import make_engine
from commands import idempotency
from workers import outbox
from workers.consumers import GROUPS
from workers.fulfilment.deadlines import fire_payment_deadlines
from workers.retention import acknowledged_below
from workers.webhooks import deliveries
from workers.webhooks.dispatch import pump_deliveries, sender_queue

PURGE_INTERVAL_S = 60
PURGE_BATCH = 1000
RESULT_TTL_S = 60  # a finished job stays visible (rq-dashboard, tests) this long
FAILURE_TTL_S = 3600  # a failed one this long: a PostgreSQL outage must not pile up a year of failures


def trim_streams() -> int:
    """Trim every partition stream behind what every group acknowledged, and forget those outbox rows."""
    settings = Settings.from_env()
    engine, client = make_engine(settings, pool_size=1), streams_client(settings)
    try:
        return trim_acknowledged(settings, engine, client)
    finally:
        client.close()
        engine.dispose()


def trim_acknowledged(settings: Settings, engine: Engine, client: StreamsClient) -> int:
    """Trim each stream (XTRIM MINID) and its outbox rows behind the entry every expected group has
    acknowledged, never past it (a slow or missing group keeps everything). Returns the rows forgotten.

    The stream goes first: an outbox row is what could publish an entry again, so it outlives it."""
    forgotten, groups = 0, settings.projections or GROUPS  # none named: every registered consumer group
    for partition, key in enumerate(stream_keys(settings.key_prefix, settings.stream_partitions)):
        below = acknowledged_below(client, key, groups)
        if below is None:
            continue
        client.xtrim(key, minid=format_entry_id(below), approximate=False)
        with engine.begin() as conn:
            forgotten += outbox.forget_acknowledged(conn, partition, below)
    return forgotten


def purge_idempotency_keys() -> int:
    """Delete every expired Idempotency-Key (commands/idempotency.py), a batch per transaction;
    returns how many."""
    engine = make_engine(Settings.from_env(), pool_size=1)
    try:
        purged = 0
        while True:
            with engine.begin() as conn:
                batch = idempotency.purge_expired(conn, PURGE_BATCH)
            purged += batch
            if batch < PURGE_BATCH:
                return purged
    finally:
        engine.dispose()


def purge_deliveries() -> int:
    """Delete webhook deliveries settled longer ago than ORDERSTREAM_WEBHOOKS_KEEP_S, a batch per
    transaction; returns how many."""
    settings = Settings.from_env()
    engine = make_engine(settings, pool_size=1)
    try:
        purged = 0
        while True:
            with engine.begin() as conn:
                batch = deliveries.purge(conn, settings.webhooks_keep_s, PURGE_BATCH)
            purged += batch
            if batch < PURGE_BATCH:
                return purged
    finally:
        engine.dispose()


def schedule(scheduler: CronScheduler, settings: Settings) -> None:
    """Register every upkeep job with rq's cron scheduler, on this deployment's queue.

    Named after the queue: rq keeps each cron job's history under its name, and deployments (or test
    environments) sharing a Redis must not mix theirs. A job left waiting in the queue (the worker busy
    with a long rebuild) expires after a few intervals instead of piling up behind it.
    """
    trim_every = max(1, math.ceil(settings.retention_interval_ms / 1000))
    jobs = (
        (fire_payment_deadlines, 1, settings.rq_queue), (trim_streams, trim_every, settings.rq_queue),
        (purge_idempotency_keys, PURGE_INTERVAL_S, settings.rq_queue),
        (purge_deliveries, PURGE_INTERVAL_S, settings.rq_queue),
        # on the senders' queue: a long rebuild on the main queue does not stop deliveries
        (pump_deliveries, 1, sender_queue(settings)),
    )  # fmt: skip
    for job, every, queue in jobs:
        scheduler.register(
            job, queue, interval=every, name=job_name(settings, job), ttl=max(10, 5 * every),
            result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S,
        )  # fmt: skip


def job_name(settings: Settings, job: Callable[[], int]) -> str:
    """The name rq cron knows an upkeep job by (its history: `rq:cron_job:<name>:jobs`)."""
    return f"{settings.rq_queue}:{job.__name__}"
