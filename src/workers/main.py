"""Entry points of the worker processes (called by the `orderstream` CLI)."""

from __future__ import annotations

import logging

from redis import Redis

from app.config import Settings
from app.db import make_engine
from queries.projections import PROJECTIONS
from workers.consumer import ConsumerGroupRunner
from workers.lifecycle import configure_logging, consumer_name, stop_on_signals
from workers.relay import Relay

log = logging.getLogger(__name__)


def run_relay(settings: Settings) -> None:
    """Run one relay (leader or standby) until SIGTERM/SIGINT."""
    configure_logging()
    stop = stop_on_signals()
    engine = make_engine(settings, pool_size=1)
    Relay(settings, engine, Redis.from_url(settings.redis_url), stop).run()
    engine.dispose()


def run_projector(settings: Settings, projection: str, name: str | None = None) -> None:
    """Run one consumer of a projection's group until SIGTERM/SIGINT."""
    configure_logging()
    stop = stop_on_signals()
    engine = make_engine(settings, pool_size=1)
    consumer = name or consumer_name()
    log.info("projector %s consuming for %s", consumer, projection)
    ConsumerGroupRunner(
        settings, PROJECTIONS[projection], engine, Redis.from_url(settings.redis_url), consumer, stop
    ).run()
    engine.dispose()
