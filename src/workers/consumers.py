"""Every consumer group that reads the partition streams: the projections (the read models), the
fulfilment process manager and the webhooks' dispatcher. Each runs under workers/consumer.py,
trimming waits for all of them, and their dead letters are redriven through them."""

from __future__ import annotations

from app.eventlog.projection import Projection
from app.platform.config import Settings
from queries.projections import PROJECTIONS
from workers.fulfilment.process import GROUP as FULFILMENT
from workers.fulfilment.process import process_manager
from workers.webhooks.dispatch import DISPATCH

GROUPS: tuple[str, ...] = (*PROJECTIONS, FULFILMENT, DISPATCH.name)


def consumers(settings: Settings) -> dict[str, Projection]:
    """Each group's consumer, by group name."""
    return {**PROJECTIONS, FULFILMENT: process_manager(settings), DISPATCH.name: DISPATCH}
