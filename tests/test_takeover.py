"""A dead consumer's entries are taken over within seconds (heartbeats), a slow one's never.

Every projector here runs with ORDERSTREAM_CLAIM_IDLE_MS at 60 s, so the idle-time fallback
(XAUTOCLAIM) cannot be what moves an entry during a test: whatever changes hands within seconds was
taken over because its consumer's heartbeat key expired. Each test ends by comparing the projection
with a rebuild from the log (nothing lost, nothing applied twice).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from app.eventlog import store as eventstore
from app.eventlog.events import ItemAdded
from app.eventlog.streams import consumer_key
from app.platform.config import Settings
from tests.support import (
    GROUP,
    META,
    NO_IDLE_CLAIM,
    TAKEOVER_S,
    Env,
    RedisServer,
    assert_exactly_once,
    group_consumers,
    isolated_env,
    pending,
    pending_ids,
    read_as,
    wait_for,
    workers,
    write_history,
    write_orders,
)


def test_a_killed_projectors_entries_are_taken_over_by_a_live_one_within_seconds(fresh_env: Env) -> None:
    env = fresh_env
    pair = (("projector", "--name", "victim"), ("projector", "--name", "survivor"))
    with workers(env, ("relay",)), workers(env, *pair, ORDERSTREAM_CONSUMER_BATCH="5", **NO_IDLE_CLAIM) as procs:
        victim, survivor = procs
        wait_for(lambda: group_consumers(env) == {"victim", "survivor"}, what="both projectors to join")
        write_orders(env, 20)
        wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") > 0, what="projecting")
        # Whatever the kill leaves pending, make sure the victim holds entries it read and never applied:
        # the survivor is paused meanwhile, so that the new entries are left for the victim's name.
        survivor.proc.send_signal(signal.SIGSTOP)
        try:
            victim.kill()
            write_orders(env, 10)
            wait_for(lambda: env.unpublished() == 0, what="publishing")
            read_as(env, "victim", count=20)
        finally:
            survivor.proc.send_signal(signal.SIGCONT)
        assert pending(env, "victim") > 0
        wait_for(lambda: pending(env, "victim") == 0, timeout=TAKEOVER_S, what="the survivor to take over")
        assert "victim stopped its heartbeat" in survivor.log()
        assert_exactly_once(env)
        wait_for(lambda: group_consumers(env) == {"survivor"}, timeout=5, what="the dead name to leave the group")


def test_a_projector_restarted_under_a_new_name_takes_over_the_dead_ones_entries(fresh_env: Env) -> None:
    env = fresh_env
    with workers(env, ("relay",)):
        with workers(env, ("projector", "--name", "before"), ORDERSTREAM_CONSUMER_BATCH="5", **NO_IDLE_CLAIM) as (
            before,
        ):
            write_orders(env, 20)
            wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") > 0, what="projecting")
            before.kill()
        write_orders(env, 10)
        wait_for(lambda: env.unpublished() == 0, what="publishing")
        read_as(env, "before", count=20)  # entries read and never applied, as a kill mid-batch leaves them
        assert pending(env, "before") > 0
        with workers(env, ("projector", "--name", "after"), **NO_IDLE_CLAIM) as (after,):
            wait_for(lambda: pending(env, "before") == 0, timeout=TAKEOVER_S, what="the new process to take over")
            assert "before stopped its heartbeat" in after.log()
            assert_exactly_once(env)
            wait_for(lambda: group_consumers(env) == {"after"}, timeout=5, what="the dead name to leave the group")


def test_a_slow_projector_keeps_its_entries_while_its_heartbeat_goes_on(fresh_env: Env) -> None:
    """Projector "slow" is stuck inside a batch (a transaction of the test holds the checkpoint row the
    batch must lock) for many heartbeat TTLs; "fast", beside it, applies everything else and leaves
    the stuck entries where they are. Released, "slow" commits them: each applied once."""
    env = fresh_env
    beats = {"ORDERSTREAM_CONSUMER_HEARTBEAT_MS": "200", **NO_IDLE_CLAIM}  # a TTL of 0.6 s
    blocked = str(uuid.uuid4())
    with workers(env, ("relay",)), workers(env, ("projector", "--name", "slow"), **beats) as (slow,):
        write_history(env, blocked, 1)  # OrderCreated, ItemAdded: version 2
        wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") == 1, what="the first order projected")
        wait_for(lambda: env.unpublished() == 0 and pending(env) == 0, what="its entries acknowledged")
        with env.engine.connect() as lock:
            held_lock = lock.begin()
            lock.execute(
                text("SELECT 1 FROM projection_checkpoints WHERE projection = :p AND stream_id = :s FOR UPDATE"),
                {"p": GROUP, "s": blocked},
            )
            add_items(env, blocked, after_version=2, count=3)  # slow's next batch must wait for that lock
            wait_for(lambda: waiting_on_a_lock(env) and len(pending_ids(env, "slow")) == 3, what="slow to block")
            held = pending_ids(env, "slow")
            with workers(env, ("projector", "--name", "fast"), **beats) as (fast,):
                try:
                    write_orders(env, 10)  # fast applies these meanwhile
                    wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") == 11, what="fast to apply")
                    deadline = time.monotonic() + 10 * 0.6  # ten heartbeat TTLs, fast looking every 0.2 s
                    while time.monotonic() < deadline:
                        assert pending_ids(env, "slow") == held, "a live consumer's entries were taken"
                        assert env.redis.exists(consumer_key(env.settings.key_prefix, GROUP, "slow"))
                        assert waiting_on_a_lock(env) and slow.proc.poll() is None
                        time.sleep(0.05)
                    assert "stopped its heartbeat" not in fast.log()
                finally:
                    held_lock.rollback()  # released: slow's batch goes on
        assert_exactly_once(env)
        wait_for(lambda: pending(env) == 0, what="every entry acknowledged")


@pytest.fixture
def redis_of_its_own(base_settings: Settings, template_db: str, tmp_path: Path) -> Iterator[tuple[Env, RedisServer]]:
    """An isolated environment on a Redis server that the test may kill and start again."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with isolated_env(base_settings, template_db, redis_url=server.url) as env:
            yield env, server
    finally:
        server.kill()


def test_a_redis_outage_longer_than_the_heartbeat_ttl_makes_no_live_consumer_look_dead(
    redis_of_its_own: tuple[Env, RedisServer],
) -> None:
    """Every heartbeat key expires while Redis is down; when it is back, no projector takes the
    other's entries for a dead one's (each waits for Redis to be calm before it trusts an absence)."""
    env, redis_server = redis_of_its_own
    beats = {"ORDERSTREAM_CONSUMER_HEARTBEAT_MS": "200", **NO_IDLE_CLAIM}  # a TTL of 0.6 s
    pair = (("projector", "--name", "p1"), ("projector", "--name", "p2"))
    with workers(env, ("relay",)), workers(env, *pair, ORDERSTREAM_CONSUMER_BATCH="5", **beats) as (p1, p2):
        wait_for(lambda: group_consumers(env) == {"p1", "p2"}, what="both projectors to join")
        for _ in range(3):
            write_orders(env, 10)  # entries in flight when Redis goes
            redis_server.kill()
            time.sleep(1.5)  # two and a half TTLs down: the keys expire (the data is kept)
            redis_server.start()
            assert_exactly_once(env)
        wait_for(lambda: pending(env) == 0, what="every entry acknowledged")
        assert "stopped its heartbeat" not in p1.log() + p2.log()
        assert group_consumers(env) == {"p1", "p2"}


def add_items(env: Env, order_id: str, after_version: int, count: int) -> None:
    """`count` more ItemAdded events of an existing order, in one transaction."""
    with env.engine.begin() as conn:
        for n in range(count):
            eventstore.append(conn, order_id, after_version + n, [ItemAdded(order_id, "B", 1, Decimal("2.00"))], META)


def waiting_on_a_lock(env: Env) -> bool:
    """A session of this database (the slow projector's) waits for a row lock."""
    return bool(
        env.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )
