"""Faults the event path survives, each against real services: nothing lost, nothing applied twice.

Every test ends by comparing the projection with a rebuild from the event log (tests/support/projections.py):
an event applied twice (ItemAdded quantities add up) or lost would make them differ.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from app.entry.factory import create_app
from app.platform.config import Settings
from app.platform.db import driver, make_engine, pipelined_transaction
from tests.support import (
    ORDER,
    Env,
    RedisServer,
    TcpProxy,
    api_client,
    assert_exactly_once,
    consumer_groups,
    converged,
    isolated_env,
    pending,
    upkeep,
    upkeep_finished_since,
    wait_for,
    workers,
    write_orders,
)
from workers.relay import current_leader
from workers.upkeep import trim_streams

PARTITIONS = 4


def test_a_dead_projectors_entries_are_claimed_by_a_live_one(fresh_env: Env) -> None:
    """kill -9 a projector mid-batch under load; a live one claims its pending entries (XAUTOCLAIM)."""
    with workers(fresh_env, ("relay",)):
        with workers(fresh_env, ("projector", "--name", "victim"), ORDERSTREAM_CONSUMER_BATCH="5") as (victim,):
            write_orders(fresh_env, 20)
            wait_for(lambda: fresh_env.scalar("SELECT count(*) FROM order_summaries") > 0, what="projecting")
            victim.kill()
        # Make sure the dead consumer holds entries it read but never applied, as a kill mid-batch leaves.
        write_orders(fresh_env, 10)
        wait_for(lambda: fresh_env.unpublished() == 0, what="publishing")
        keys = {f"{fresh_env.settings.key_prefix}:events:{n}": ">" for n in range(PARTITIONS)}
        fresh_env.redis.xreadgroup("order_summaries", "victim", keys, count=20)  # type: ignore[arg-type]
        assert pending(fresh_env, "victim") > 0
        with workers(fresh_env, ("projector", "--name", "survivor")):
            wait_for(lambda: pending(fresh_env, "victim") == 0, timeout=20, what="the survivor to claim them")
            assert_exactly_once(fresh_env)


def test_relay_leader_killed_the_standby_takes_over(fresh_env: Env) -> None:
    with workers(fresh_env, ("relay",), ("relay",), ("projector",)) as (first, second, _projector):
        leader = wait_for(lambda: _leader(fresh_env), what="a relay to lead")
        victim, standby = (first, second) if leader.endswith(f"-{first.proc.pid}") else (second, first)
        write_orders(fresh_env, 10)
        wait_for(lambda: fresh_env.unpublished() == 0, what="the leader to publish")
        victim.kill()
        killed_at = time.monotonic()
        write_orders(fresh_env, 10)
        new_leader = wait_for(lambda: _leader(fresh_env), timeout=10, what="the standby to take over")
        assert new_leader.endswith(f"-{standby.proc.pid}")
        wait_for(lambda: fresh_env.unpublished() == 0, timeout=10, what="the standby to publish the rest")
        assert time.monotonic() - killed_at < 10
        assert_exactly_once(fresh_env)


def _leader(env: Env) -> str | None:
    with env.engine.connect() as conn:
        return current_leader(conn)


def test_redis_outage_commands_keep_succeeding_and_projections_converge(
    own_redis_env: Env, redis_server: RedisServer
) -> None:
    env = own_redis_env
    client = api_client(create_app(env.settings))
    with workers(env, ("relay",), ("projector",)):
        placed = [_place(client) for _ in range(5)]
        wait_for(lambda: converged(env), what="projecting before the outage")
        redis_server.kill()
        during = [_place(client) for _ in range(10)]  # the request path needs only PostgreSQL
        assert env.unpublished() >= 10
        redis_server.start()  # same data (append-only file): workers reconnect by themselves
        wait_for(lambda: converged(env), timeout=30, what="projections to converge after the outage")
    assert env.unpublished() == 0
    assert env.scalar("SELECT count(*) FROM order_summaries") == len(placed + during)
    assert_exactly_once(env)


def _place(client: FlaskClient, customer: str = "c-1") -> str:
    response = client.post("/orders", json={**ORDER, "customer_id": customer})
    assert response.status_code == 201, response.json
    return str(response.json["order_id"])


def test_redis_restarted_empty_is_repaired_from_postgresql(own_redis_env: Env, redis_server: RedisServer) -> None:
    env = own_redis_env
    with workers(env, ("relay",)):
        write_orders(env, 10)
        wait_for(lambda: env.unpublished() == 0, what="publishing")
        with workers(env, ("projector",)):
            wait_for(lambda: converged(env), what="projecting")
        write_orders(env, 10)  # published, but no projector has read them yet
        wait_for(lambda: env.unpublished() == 0, what="publishing the second lot")
        redis_server.kill()
        redis_server.wipe()
        redis_server.start()  # empty: no streams, no groups
        with workers(env, ("projector",)):
            assert_exactly_once(env)


def test_redis_failed_over_to_a_replica_that_missed_writes_converges(
    own_redis_env: Env, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = own_redis_env
    with workers(env, ("relay",)):
        write_orders(env, 5)
        wait_for(lambda: env.unpublished() == 0, what="publishing")
        redis_server.snapshot(tmp_path / "replica.rdb")  # the replica's view stops here
        write_orders(env, 10)
        wait_for(lambda: env.unpublished() == 0, what="publishing what the replica will miss")
        redis_server.roll_back_to(tmp_path / "replica.rdb")
        with workers(env, ("projector",)):
            assert_exactly_once(env)


def test_postgresql_outage_commands_fail_fast_with_503_and_nothing_pending_is_dropped(
    base_settings: Settings, template_db: str
) -> None:
    host, port = base_settings.database_url.rsplit("@", 1)[1].split("/")[0].rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    try:
        with isolated_env(base_settings, template_db, database_port=proxy.port) as env:
            client = api_client(create_app(env.settings))
            with workers(env, ("projector",)):  # its consumer group exists before the outage
                wait_for(lambda: consumer_groups(env.redis, f"{env.settings.key_prefix}:events:0"), what="the group")
            with workers(env, ("relay",)):
                write_orders(env, 10)
                wait_for(lambda: env.unpublished() == 0, what="publishing")
            events_before = env.scalar("SELECT count(*) FROM events")
            proxy.cut()
            with workers(env, ("projector",)):
                keys = [f"{env.settings.key_prefix}:events:{n}" for n in range(PARTITIONS)]
                wait_for(lambda: pending(env) > 0, timeout=20, what="the projector to read entries it cannot apply")
                started = time.monotonic()
                response = client.post("/orders", json=ORDER)
                assert response.status_code == 503 and time.monotonic() - started < 10
                assert response.content_type == "application/problem+json"
                assert response.headers["Retry-After"] == "5"
                assert sum(env.redis.xlen(k) for k in keys) == events_before  # nothing dropped from Redis
                proxy.restore()
                env.engine.dispose()  # the test's own pooled connections died with the link
                assert_exactly_once(env)
                wait_for(lambda: pending(env) == 0, what="every entry acknowledged")
            assert env.scalar("SELECT count(*) FROM events") == events_before  # the 503 wrote nothing
    finally:
        proxy.close()


def test_a_poison_event_is_dead_lettered_the_rest_flows_and_it_can_be_redriven_or_discarded(fresh_env: Env) -> None:
    env = fresh_env
    app = create_app(env.settings)
    client = api_client(app)
    # A projector bug, simulated by a constraint the projection's rows for two customers violate.
    with env.engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE order_summaries ADD CONSTRAINT simulated_bug CHECK (left(customer_id, 6) <> 'poison')"
        )
    with workers(env, ("relay",), ("projector",)):
        wait_for(
            lambda: consumer_groups(env.redis, f"{env.settings.key_prefix}:events:3"), what="the projector's group"
        )
        poison = [_place(client, customer) for customer in ("poison-1", "poison-2")]
        healthy = [_place(client, "healthy") for _ in range(10)]
        wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") == len(healthy), what="healthy orders")
        letters = wait_for(
            lambda: (r := client.get("/admin/dead-letters?status=open").json) and len(r) == 2 and r,
            timeout=30,
            what="two dead letters",
        )
        assert {letter["stream_id"] for letter in letters} == set(poison)
        for letter in letters:
            assert letter["event_type"] == "OrderCreated" and letter["version"] == 1
            assert "simulated_bug" in letter["error"] and letter["attempts"] >= 3
            assert letter["consumer"] and letter["failed_at"]
        dead_stream = env.redis.xrange(f"{env.settings.key_prefix}:dead-letters")
        assert len(dead_stream) == 2 and b"simulated_bug" in dead_stream[0][1][b"error"]
        assert pending(env) == 0

        with env.engine.begin() as conn:  # the bug is fixed
            conn.exec_driver_sql("ALTER TABLE order_summaries DROP CONSTRAINT simulated_bug")
        first, second = sorted(letters, key=lambda letter: letter["id"])
        queued = client.post(f"/admin/dead-letters/{first['id']}/redrive")
        assert queued.status_code == 202 and queued.json["status"] == "queued"
        with workers(env, ("rqworker",)):
            job = wait_for(
                lambda: (j := client.get(queued.json["status_url"]).json)["status"] == "finished" and j,
                timeout=30,
                what="the redrive job to finish",
            )
        assert job["result"]["applied"] == 1
        assert client.get(f"/admin/dead-letters/{first['id']}").json["status"] == "redriven"
        assert client.get(f"/orders/{first['stream_id']}").json["customer_id"].startswith("poison")

        discarded = client.post(f"/admin/dead-letters/{second['id']}/discard", json={"reason": "test order"})
        assert discarded.status_code == 200
        assert discarded.json["status"] == "discarded" and "test order" in discarded.json["resolution"]
        assert client.post(f"/admin/dead-letters/{second['id']}/redrive").status_code == 409
        assert client.get(f"/orders/{second['stream_id']}").status_code == 404


def test_streams_are_trimmed_behind_every_group_and_a_slow_group_keeps_its_entries(fresh_env: Env) -> None:
    env = fresh_env
    keys = [f"{env.settings.key_prefix}:events:{n}" for n in range(PARTITIONS)]
    with workers(env, ("relay",), ("projector",)), upkeep(env):
        write_orders(env, 20)
        wait_for(lambda: converged(env), what="projecting")
        wait_for(lambda: sum(env.redis.xlen(k) for k in keys) == 0, what="the streams to be trimmed")
        wait_for(lambda: env.scalar("SELECT count(*) FROM outbox") == 0, what="the outbox to be emptied")

        for key in keys:  # a group that reads nothing: everything from here on must stay for it
            env.redis.xgroup_create(key, "slow", id="$")
        write_orders(env, 20)
        wait_for(lambda: converged(env), what="projecting the second lot")
        published = env.scalar("SELECT count(*) FROM events") // 2
        assert wait_for(lambda: sum(env.redis.xlen(k) for k in keys) == published, what="entries kept for 'slow'")
        assert env.scalar("SELECT count(*) FROM outbox") == published

        for key in keys:  # the slow group catches up and acknowledges
            for _stream, entries in env.redis.xreadgroup("slow", "s", {key: ">"}, count=10_000) or []:
                env.redis.xack(key, "slow", *[entry_id for entry_id, _ in entries])
        wait_for(lambda: sum(env.redis.xlen(k) for k in keys) == 0, what="trimming after the slow group acked")


def test_sigterm_projector_finishes_its_batch_and_relay_hands_over_at_once(fresh_env: Env) -> None:
    env = fresh_env
    with workers(env, ("relay",), ("projector", "--name", "graceful")) as (relay, projector):
        stop = threading.Event()
        writer = threading.Thread(target=lambda: [write_orders(env, 1) for _ in iter(stop.is_set, True)])
        writer.start()
        wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") > 5, what="projecting under load")
        assert projector.terminate() == 0
        assert pending(env, "graceful") == 0  # it acknowledged everything it had applied
        with workers(env, ("relay",)) as (standby,):
            wait_for(lambda: (leader := _leader(env)) and leader.endswith(f"-{relay.proc.pid}"), what="leader")
            assert relay.terminate() == 0
            wait_for(
                lambda: (leader := _leader(env)) and leader.endswith(f"-{standby.proc.pid}"),
                timeout=5,
                what="the standby to lead within seconds",
            )
            stop.set()
            writer.join()
            with workers(env, ("projector",)):
                assert_exactly_once(env)


def test_redis_wiped_while_the_relay_is_idle_is_noticed_by_the_next_publish(
    base_settings: Settings, template_db: str, redis_server: RedisServer
) -> None:
    """New events arrive before the periodic check could run: the publish itself sees the loss."""
    with isolated_env(base_settings, template_db, redis_url=redis_server.url) as env:
        slow_upkeep = {"ORDERSTREAM_RETENTION_INTERVAL_MS": "600000"}
        with workers(env, ("relay",), **slow_upkeep):
            write_orders(env, 10)
            wait_for(lambda: env.unpublished() == 0, what="publishing")
            redis_server.kill()
            redis_server.wipe()
            redis_server.start()
            write_orders(env, 3)  # published at once, onto the emptied streams
            wait_for(lambda: env.unpublished() == 0, what="publishing after the wipe")
            with workers(env, ("projector",)):
                assert_exactly_once(env)


def test_trimming_waits_for_an_expected_group_that_does_not_exist_yet(fresh_env: Env) -> None:
    env = fresh_env
    keys = [f"{env.settings.key_prefix}:events:{n}" for n in range(PARTITIONS)]
    expecting_sales = {"ORDERSTREAM_PROJECTIONS": "order_summaries,sales_stats"}
    with workers(env, ("relay",)), upkeep(env, **expecting_sales), workers(env, ("projector",)):
        write_orders(env, 10)
        wait_for(lambda: env.unpublished() == 0, what="publishing")
        wait_for(lambda: pending(env) == 0 and converged(env), what="order_summaries to acknowledge everything")
        events = env.scalar("SELECT count(*) FROM events")
        acknowledged = time.time()
        wait_for(lambda: upkeep_finished_since(env, trim_streams, acknowledged), what="a trimming round after the ack")
        assert sum(env.redis.xlen(k) for k in keys) == events  # sales_stats has no group yet: nothing went
        assert env.scalar("SELECT count(*) FROM outbox") == events
        with workers(env, ("projector", "--projection", "sales_stats")):  # once it exists and acks: trimmed
            wait_for(lambda: sum(env.redis.xlen(k) for k in keys) == 0, what="trimming behind both groups")


def test_after_postgresql_drops_every_connection_at_most_one_request_fails(env: Env) -> None:
    """A restart or failover kills every pooled connection at once: the first request to find out
    answers 503, and takes the whole stale pool with it, so the next ones get fresh connections."""
    from app.platform.db import driver

    app = create_app(env.settings)
    client = api_client(app)
    engine = app.extensions["orderstream"]["engine"]
    pooled = [engine.connect() for _ in range(3)]
    pids = [driver(conn).info.backend_pid for conn in pooled]
    for conn in pooled:
        conn.close()  # back to the pool, alive as far as it knows
    with env.engine.connect() as admin:
        for pid in pids:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    commands = [client.post("/orders", json=ORDER).status_code for _ in range(3)]
    reads = [client.get("/orders?page_size=1").status_code for _ in range(2)]
    assert commands[0] in (201, 503) and commands[1:] == [201, 201], commands
    assert reads == [200, 200]
    engine.dispose()


def test_a_web_process_out_of_database_connections_answers_503_and_writes_nothing(env: Env) -> None:
    """Every pooled connection busy (requests waiting on locks, say) for longer than the pool's wait:
    a command and a read answer 503 with Retry-After, never 500; once connections are free, 201."""
    app = create_app(env.settings)
    client = api_client(app)
    engine = app.extensions["orderstream"]["engine"]
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    before = env.scalar("SELECT count(*) FROM events")
    busy = [client.post("/orders", json=ORDER), client.get("/orders?page_size=1")]
    assert [r.status_code for r in busy] == [503, 503], [r.json for r in busy]
    assert all(r.headers["Retry-After"] == "5" and "busy" in r.json["detail"] for r in busy)
    assert busy[0].content_type == "application/problem+json"
    assert env.scalar("SELECT count(*) FROM events") == before
    for conn in held:
        conn.close()
    assert client.post("/orders", json=ORDER).status_code == 201
    engine.dispose()


def test_a_pipelined_transaction_that_fails_leaves_its_connection_fit_for_the_next(fresh_env: Env) -> None:
    """psycopg prepares a statement on its sixth run; inside a pipeline an earlier error aborted, the
    server skips the prepare while psycopg records it as done. Unless the failure is rolled back
    through psycopg (which forgets its prepared statements), every later transaction on the pooled
    connection then fails on a statement the server never prepared."""
    engine = make_engine(fresh_env.settings, pool_size=1)  # one connection, reused by every transaction
    with fresh_env.engine.begin() as conn:
        conn.execute(text("CREATE TABLE pipeline_probe (id int PRIMARY KEY); INSERT INTO pipeline_probe VALUES (1)"))
    touch = "UPDATE pipeline_probe SET id = id WHERE id = %(id)s"

    def transaction(fail: bool) -> None:
        with pipelined_transaction(engine) as conn:
            pg = driver(conn)
            pg.execute("SELECT 1").fetchall()
            if fail:
                pg.execute("INSERT INTO pipeline_probe VALUES (1)")  # a unique violation, read by nobody
            pg.execute(touch, {"id": 1})

    try:
        with pytest.raises(psycopg.errors.UniqueViolation):
            transaction(fail=True)
        for _ in range(5):
            transaction(fail=False)
        with pytest.raises(psycopg.errors.UniqueViolation):
            transaction(fail=True)  # `touch` reaches the prepare threshold in an aborted pipeline
        for _ in range(3):
            transaction(fail=False)  # raised "prepared statement ... does not exist" before the fix
    finally:
        engine.dispose()
