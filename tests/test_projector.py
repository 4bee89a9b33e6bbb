"""Projector workers on real PostgreSQL and Redis: exactly-once effect, in order, any number of consumers."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from redis import Redis
from sqlalchemy import text

from app.eventlog import store as eventstore
from app.eventlog.streams import encode_entry, stream_key_for
from commands.order import Order
from queries.order_summaries import ORDER_SUMMARIES
from tests.support import Env, in_thread, rebuilt, relay_loop, snapshot, wait_for, workers, write_history
from workers.consumer import ConsumerGroupRunner


def runner(env: Env, name: str, stop: threading.Event) -> ConsumerGroupRunner:
    return ConsumerGroupRunner(env.settings, ORDER_SUMMARIES, env.engine, env.redis, name, stop)


def projected(env: Env, order_id: str) -> dict[str, Any]:
    rows = env.rows("SELECT status, total, version FROM order_summaries WHERE order_id = :id", id=order_id)
    return dict(rows[0]) if rows else {}


def folded(env: Env, order_id: str) -> dict[str, Any]:
    with env.engine.connect() as conn:
        order = Order.fold(order_id, [e.domain_event() for e in eventstore.load(conn, order_id)])
    return {"status": order.status.value, "total": order.total, "version": order.version}


def test_redelivered_and_reordered_entries_leave_the_projection_unchanged(fresh_env: Env) -> None:
    orders = [str(uuid.uuid4()) for _ in range(10)]
    recorded = [e for o in orders for e in write_history(fresh_env, o, items=5, pay=True)]
    chaos = recorded + random.sample(recorded, len(recorded) // 2)  # every event once, half of them twice
    random.shuffle(chaos)
    consumer = runner(fresh_env, "c1", threading.Event())
    with fresh_env.engine.begin() as conn:  # not a new projection: the streams are its only source here
        conn.execute(text("INSERT INTO projection_catchups (projection) VALUES ('order_summaries')"))
    consumer.ensure_groups()
    prefix, partitions = fresh_env.settings.key_prefix, fresh_env.settings.stream_partitions
    for event in chaos:
        fresh_env.redis.xadd(stream_key_for(prefix, partitions, event.stream_id), encode_entry(event))  # type: ignore[arg-type]
    while consumer.step():
        pass
    for order_id in orders:
        assert projected(fresh_env, order_id) == folded(fresh_env, order_id)
    assert snapshot(fresh_env) == rebuilt(fresh_env)
    assert fresh_env.scalar("SELECT sum(version) FROM projection_checkpoints") == len(recorded)

    for event in random.sample(recorded, 20):  # a late redelivery of old entries changes nothing
        fresh_env.redis.xadd(stream_key_for(prefix, partitions, event.stream_id), encode_entry(event))  # type: ignore[arg-type]
    before = snapshot(fresh_env)
    while consumer.step():
        pass
    assert snapshot(fresh_env) == before


def consumers_on_every_partition(env: Env) -> set[str]:
    names = None
    for n in range(env.settings.stream_partitions):
        key = f"{env.settings.key_prefix}:events:{n}"
        if not env.redis.exists(key) or not env.redis.xinfo_groups(key):
            return set()
        found = {c["name"].decode() for c in env.redis.xinfo_consumers(key, "order_summaries")}
        names = found if names is None else names & found
    return names or set()


def test_two_projector_processes_produce_the_same_rows_as_a_rebuild(fresh_env: Env) -> None:
    orders = [str(uuid.uuid4()) for _ in range(30)]
    pair = (("projector", "--name", "p1"), ("projector", "--name", "p2"))
    with in_thread(relay_loop(fresh_env)), workers(fresh_env, *pair):
        wait_for(lambda: consumers_on_every_partition(fresh_env) == {"p1", "p2"}, what="both consumers to join")
        threads = [threading.Thread(target=write_history, args=(fresh_env, o, 6, True)) for o in orders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        events = fresh_env.scalar("SELECT count(*) FROM events")
        wait_for(
            lambda: fresh_env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events,
            what="both projectors to apply every event",
        )
    assert snapshot(fresh_env) == rebuilt(fresh_env)
    for order_id in orders:
        assert projected(fresh_env, order_id) == folded(fresh_env, order_id)


def test_projector_killed_mid_batch_then_restarted_applies_everything_once(fresh_env: Env) -> None:
    orders = [str(uuid.uuid4()) for _ in range(40)]
    with in_thread(relay_loop(fresh_env)):
        with workers(fresh_env, ("projector", "--name", "victim"), ORDERSTREAM_CONSUMER_BATCH="5") as (victim,):
            for order_id in orders:
                write_history(fresh_env, order_id, 4)
            wait_for(lambda: fresh_env.scalar("SELECT count(*) FROM order_summaries") > 0, what="projecting to start")
            victim.kill()
        for order_id in orders[:10]:
            write_history(fresh_env, str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)), 4)
        wait_for(lambda: fresh_env.unpublished() == 0, what="the relay to publish")
        # Whatever the kill left, make sure "victim" also holds entries it read but never applied:
        # exactly what a crash between XREADGROUP and COMMIT leaves behind.
        keys = {f"{fresh_env.settings.key_prefix}:events:{n}": ">" for n in range(4)}
        fresh_env.redis.xreadgroup("order_summaries", "victim", keys, count=10)  # type: ignore[arg-type]
        assert _pending(fresh_env.redis, fresh_env.settings.key_prefix) > 0
        with workers(fresh_env, ("projector", "--name", "victim")):
            events = fresh_env.scalar("SELECT count(*) FROM events")
            wait_for(
                lambda: fresh_env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events,
                what="the restarted projector to catch up",
            )
            wait_for(
                lambda: _pending(fresh_env.redis, fresh_env.settings.key_prefix) == 0,
                what="the restarted consumer to acknowledge its own pending entries",
            )
    assert snapshot(fresh_env) == rebuilt(fresh_env)


def _pending(redis: Redis, prefix: str) -> int:
    return sum(int(redis.xpending(f"{prefix}:events:{n}", "order_summaries")["pending"]) for n in range(4))


def test_projector_cut_off_from_postgresql_mid_batch_again_and_again_applies_everything_once(fresh_env: Env) -> None:
    """The projector's batches are pipelined transactions (writes, checkpoint move and COMMIT sent
    together): its connections are terminated over and over in the middle of batches (never while
    idle) while it consumes live entries; every event still lands exactly once, nothing stays pending."""
    env = fresh_env
    cuts: list[int] = []

    def cut_off(stop: threading.Event) -> None:
        while not stop.wait(0.02):
            with env.engine.connect() as conn:
                cuts.append(
                    conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = 'cut-off-projector' AND datname = current_database()"
                            " AND state <> 'idle'"  # in the middle of a batch: a statement or a transaction
                        )
                    ).scalar_one()
                )

    orders = [str(uuid.uuid4())]
    with (
        in_thread(relay_loop(env)),
        workers(env, ("projector",), ORDERSTREAM_CONSUMER_BATCH="5", PGAPPNAME="cut-off-projector") as (projector,),
    ):
        write_history(env, orders[0], 4, pay=True)
        wait_for(lambda: projected(env, orders[0]).get("version") == 7, what="the projector to consume live entries")
        with in_thread(cut_off):
            deadline = time.monotonic() + 30
            while (len(orders) < 60 or sum(cuts) < 10) and time.monotonic() < deadline:
                orders.append(str(uuid.uuid4()))
                write_history(env, orders[-1], 4, pay=True)
        assert sum(cuts) >= 10, cuts
        events = env.scalar("SELECT count(*) FROM events")
        wait_for(
            lambda: env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events,
            timeout=60,
            what="the projector to apply every event after the cuts",
        )
        wait_for(lambda: _pending(env.redis, env.settings.key_prefix) == 0, what="every entry acknowledged")
        assert "retrying a batch after" in projector.log()
    assert snapshot(env) == rebuilt(env)
    checkpoints = env.rows("SELECT stream_id, version FROM projection_checkpoints")
    assert {(r["stream_id"], r["version"]) for r in checkpoints} == {(order_id, 7) for order_id in orders}
