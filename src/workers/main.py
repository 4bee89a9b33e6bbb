"""Entry points of the worker processes (called by the `orderstream` CLI)."""

from __future__ import annotations

import contextlib
import logging
import threading

from redis import Redis

from app.eventlog.streams import streams_client
from app.platform.config import Settings
from app.platform.db import make_engine
from workers.consumer import ConsumerGroupRunner
from workers.consumers import consumers
from workers.lifecycle import configure_logging, consumer_name, stop_on_signals
from workers.loop import run_until_stopped
from workers.relay import Relay
from workers.upkeep import schedule

log = logging.getLogger(__name__)


def run_relay(settings: Settings) -> None:
    """Run one relay (leader or standby) until SIGTERM/SIGINT."""
    configure_logging()
    stop = stop_on_signals()
    engine = make_engine(settings, pool_size=2)  # one publishes for the whole term, one repairs lost streams
    Relay(settings, engine, streams_client(settings), stop).run()
    engine.dispose()


def run_projector(settings: Settings, projection: str, name: str | None = None) -> None:
    """Run one consumer of a projection's group (or the fulfilment process manager's) until SIGTERM/SIGINT."""
    configure_logging()
    stop = stop_on_signals()
    # A new projection's catch-up holds one connection for its lock, applies on a second and reads the
    # log ahead on a third (the pool allows as many again in overflow).
    engine = make_engine(settings, pool_size=2)
    consumer = name or consumer_name()
    log.info("projector %s consuming for %s", consumer, projection)
    ConsumerGroupRunner(
        settings, consumers(settings)[projection], engine, streams_client(settings), consumer, stop
    ).run()
    engine.dispose()


def run_upkeep(settings: Settings) -> None:
    """Run rq's cron scheduler, enqueueing the upkeep jobs (workers/upkeep.py), until SIGTERM/SIGINT.

    The scheduler handles those signals itself (it raises StopRequested in its loop, and returns);
    a lost Redis makes it raise instead, and it starts again after a backoff, like every worker."""
    from rq.cron import CronScheduler  # (only this process needs rq's scheduler)
    from rq.exceptions import StopRequested

    configure_logging()
    # Timeouts: a Redis that stops answering is an error to back off from, not a wait that holds SIGTERM.
    client = Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    scheduler = CronScheduler(client)
    schedule(scheduler, settings)
    stopped = threading.Event()

    def work() -> None:
        # StopRequested: the signal came outside the scheduler's own loop (while registering, say).
        with contextlib.suppress(StopRequested):
            scheduler.start()  # type: ignore[no-untyped-call]  # returns once asked to stop
        stopped.set()

    try:
        run_until_stopped(work, stopped, "upkeep scheduler")
    except StopRequested:  # the signal came during a backoff
        log.info("upkeep scheduler stopped")
