"""Payment deadlines: durable in PostgreSQL (the fulfilment table), woken by rq's cron scheduler.

`orderstream upkeep` registers `fire_payment_deadlines` with rq's CronScheduler every second; the rq
worker runs it. It locks the rows whose deadline is due and still pending (SKIP LOCKED: two firings,
or a firing and the process manager's reaction, never take one row together), cancels each order
that is still unpaid through the same handler the HTTP API uses (ExpireOrder: actor `fulfilment`,
reason `payment timeout`), and marks the deadline fired, all in one transaction: a deadline fires
once, and a crash before the commit leaves it due for the next tick. A deadline survives the loss
of Redis and of every worker: the database is the truth, the scheduler only wakes it. An order paid
or cancelled meanwhile (the process manager may not have met that event yet) is not cancelled: its
deadline is marked met or cancelled instead.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine

from app.eventlog import store as eventstore
from app.eventlog.events import OrderStatus
from app.eventlog.store import ConcurrencyError
from app.platform.config import Settings
from app.platform.db import make_engine
from commands.errors import InvalidTransition
from commands.handlers import ExpireOrder, handle
from commands.order import Order
from workers.fulfilment import state
from workers.fulfilment.process import command_metadata

log = logging.getLogger(__name__)

BATCH = 200  # deadlines fired per transaction (the rest wait for the next tick, a second later)


def fire_payment_deadlines() -> int:
    """The rq job: fire every due payment deadline; returns how many orders it cancelled."""
    engine = make_engine(Settings.from_env(), pool_size=1)
    try:
        return fire_due(engine)
    finally:
        engine.dispose()


def fire_due(engine: Engine) -> int:
    """Fire the deadlines due now (up to BATCH, in one transaction); returns the orders cancelled."""
    fired = 0
    with engine.begin() as conn:
        for order_id in state.lock_due(conn, BATCH):
            try:
                with conn.begin_nested():
                    handle(conn, ExpireOrder(order_id), command_metadata(None))
            except ConcurrencyError:
                continue  # the order moved as we cancelled it: due again on the next tick, on its new state
            except InvalidTransition:
                state.settle_deadline(conn, order_id, _settled(conn, order_id))
                continue
            state.settle_deadline(conn, order_id, state.FIRED)
            fired += 1
            log.info("order %s cancelled: payment timeout", order_id)
    return fired


def _settled(conn: Connection, order_id: str) -> str:
    """The deadline's state for an order no longer pending: met if it was paid, cancelled if not."""
    order = Order.fold(order_id, (e.domain_event() for e in eventstore.load(conn, order_id)))
    return state.CANCELLED if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED) else state.MET
