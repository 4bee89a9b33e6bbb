"""The relay on real PostgreSQL and Redis: every committed event reaches its stream, in order per order."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import defaultdict
from decimal import Decimal

from app.eventlog import store as eventstore
from app.eventlog.events import ItemAdded
from tests.support import META, Env, created, in_thread, relay_loop, stream_entries, wait_for, workers
from workers.relay import Relay


def published(env: Env) -> dict[str, list[int]]:
    """Per order, the versions in the order they appear on the streams."""
    seen: dict[str, list[int]] = defaultdict(list)
    for _key, fields in stream_entries(env):
        envelope = json.loads(fields[b"envelope"])
        seen[envelope["stream_id"]].append(envelope["version"])
    return seen


def write_order(env: Env, order_id: str, items: int) -> None:
    with env.engine.begin() as conn:
        eventstore.append(conn, order_id, 0, [created(order_id)], META)
    for version in range(1, items + 1):
        with env.engine.begin() as conn:
            eventstore.append(conn, order_id, version, [ItemAdded(order_id, f"S{version}", 1, Decimal(1))], META)


def test_many_concurrent_writers_every_event_published_in_order(fresh_env: Env) -> None:
    orders = {str(uuid.uuid4()): random.randint(0, 6) for _ in range(60)}
    with in_thread(relay_loop(fresh_env)):
        threads = [threading.Thread(target=write_order, args=(fresh_env, o, n)) for o, n in orders.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(n + 1 for n in orders.values())
        wait_for(lambda: len(stream_entries(fresh_env)) >= total, what=f"{total} stream entries")
        wait_for(lambda: fresh_env.unpublished() == 0, what="every event published")
    seen = published(fresh_env)
    assert {o: seen[o] for o in orders} == {o: list(range(1, n + 2)) for o, n in orders.items()}


def test_an_event_that_commits_late_is_not_skipped(fresh_env: Env) -> None:
    """Position 1 is taken first but committed last; a reader tailing by position would skip it."""
    late, early = str(uuid.uuid4()), str(uuid.uuid4())
    with in_thread(relay_loop(fresh_env)):
        with fresh_env.engine.begin() as slow:
            late_event = eventstore.append(slow, late, 0, [created(late)], META)[0]
            with fresh_env.engine.begin() as fast:
                early_event = eventstore.append(fast, early, 0, [created(early)], META)[0]
            assert late_event.position < early_event.position
            wait_for(lambda: early in published(fresh_env), what="the early commit on the stream")
            assert late not in published(fresh_env)
        wait_for(lambda: late in published(fresh_env), what="the late commit on the stream")
    assert published(fresh_env)[late] == [1]


def test_relay_killed_mid_stream_loses_nothing(fresh_env: Env) -> None:
    """kill -9 the relay process while events keep arriving; a new relay publishes everything."""
    orders = [str(uuid.uuid4()) for _ in range(40)]
    with workers(fresh_env, ("relay",)) as (relay,):
        for order_id in orders[:20]:
            write_order(fresh_env, order_id, 2)
        wait_for(lambda: stream_entries(fresh_env), what="the relay to start publishing")
        relay.kill()
        for order_id in orders[20:]:
            write_order(fresh_env, order_id, 2)
        assert fresh_env.unpublished() > 0
    with workers(fresh_env, ("relay",)):
        wait_for(lambda: fresh_env.unpublished() == 0, what="the new relay to publish the rest")
    seen = published(fresh_env)
    for order_id in orders:
        # duplicates are allowed (at least once); the first occurrence of each version is in order
        first_seen = list(dict.fromkeys(seen[order_id]))
        assert first_seen == [1, 2, 3], (order_id, seen[order_id])


def test_a_loss_seen_while_publishing_survives_a_crash_before_the_repair(fresh_env: Env) -> None:
    """Redis loses a stream; the next publish finds out, and the relay's PostgreSQL connection dies
    before it has queued the lost event again. The next leader must still see the loss and publish
    the event again: the new order's entry must not have hidden it."""
    from app.eventlog.streams import partition_of

    env, stop = fresh_env, threading.Event()
    partitions = env.settings.stream_partitions
    first = str(uuid.uuid4())
    second = next(
        o
        for o in (str(uuid.uuid4()) for _ in range(1000))
        if partition_of(partitions, o) == partition_of(partitions, first)
    )
    relay = Relay(env.settings, env.engine, env.redis, stop)
    relay.repair_lost_streams()  # what leading starts with
    with env.engine.begin() as conn:
        eventstore.append(conn, first, 0, [created(first)], META)
    with env.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as publisher:
        assert relay.publish_batch(publisher) == 1
        env.redis.delete(relay.keys[partition_of(partitions, first)])  # a restart without persistence
        with env.engine.begin() as conn:
            eventstore.append(conn, second, 0, [created(second)], META)
        crashed = env.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        crashed_pid = crashed.connection.driver_connection.info.backend_pid

        def publish_and_lose_the_connection_after_the_xadd() -> None:
            real_xadd_pipeline = relay.redis.pipeline

            def pipeline(*args, **kwargs):  # type: ignore[no-untyped-def]
                pipe = real_xadd_pipeline(*args, **kwargs)
                real_execute = pipe.execute

                def execute(*a, **k):  # type: ignore[no-untyped-def]
                    results = real_execute(*a, **k)  # the XADDs are done: now PostgreSQL goes away
                    with env.engine.connect() as admin:
                        admin.exec_driver_sql(f"SELECT pg_terminate_backend({crashed_pid})")
                    return results

                pipe.execute = execute
                return pipe

            relay.redis.pipeline = pipeline  # type: ignore[method-assign]
            try:
                relay.publish_batch(crashed)
            finally:
                relay.redis.pipeline = real_xadd_pipeline  # type: ignore[method-assign]

        try:
            publish_and_lose_the_connection_after_the_xadd()
            raise AssertionError("the relay's connection should have died")
        except Exception as exc:  # psycopg.OperationalError, as a real crash would raise
            assert "terminat" in str(exc).lower() or "closed" in str(exc).lower() or "connection" in str(exc).lower()
        crashed.invalidate()
    successor = Relay(env.settings, env.engine, env.redis, stop)
    successor.repair_lost_streams()
    with env.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as publisher:
        while successor.publish_batch(publisher):
            pass
    on_streams = published(env)
    assert 1 in on_streams[first], "the event Redis lost was never published again"
    assert 1 in on_streams[second]
