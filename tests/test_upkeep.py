"""Upkeep on real PostgreSQL and Redis: rq's cron scheduler (`orderstream upkeep`) enqueues trimming
and purging for the rq worker, with no relay running; lag is measured at each scrape, whoever is dead;
two upkeeps at once (two instances) do the work once."""

from __future__ import annotations

import threading
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from app.eventlog.streams import stream_keys, streams_client
from commands import idempotency
from tests.support import (
    ORDER,
    Env,
    converged,
    upkeep,
    wait_for,
    web_server,
    workers,
    write_orders,
)
from workers.upkeep import trim_acknowledged


def stream_length(env: Env) -> int:
    return sum(env.redis.xlen(key) for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions))


def add_idempotency_key(env: Env, key: str, expires_in_s: int) -> None:
    with env.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO idempotency_keys (principal, key, fingerprint, status, body, headers, expires_at)"
            f" VALUES ('t', '{key}', '', 200, '{{}}', '{{}}', now() + interval '{expires_in_s} seconds')"
        )


def test_streams_are_trimmed_and_expired_keys_purged_with_the_relay_stopped(fresh_env: Env) -> None:
    env = fresh_env
    with workers(env, ("relay",), ("projector",)):
        write_orders(env, 10)
        wait_for(lambda: env.unpublished() == 0 and converged(env), what="publishing and projecting")
    events = env.scalar("SELECT count(*) FROM events")
    add_idempotency_key(env, "expired", -1)
    add_idempotency_key(env, "live", 3600)
    assert stream_length(env) == events and env.scalar("SELECT count(*) FROM outbox") == events  # nobody trims

    with upkeep(env):  # no relay, no projector: upkeep alone
        wait_for(lambda: stream_length(env) == 0, what="the streams to be trimmed")
        wait_for(lambda: env.scalar("SELECT count(*) FROM outbox") == 0, what="the outbox to be emptied")
        wait_for(lambda: env.scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'expired'") == 0,
                 what="the expired key to be purged")  # fmt: skip
    assert env.scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'live'") == 1


def test_lag_backlog_and_pending_are_exported_with_the_relay_dead(fresh_env: Env, tmp_path: Path) -> None:
    env = fresh_env
    metrics = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    token = {"Authorization": f"Bearer {env.settings.admin_token}"}
    with web_server(env, **metrics) as base:

        def gauges() -> dict[tuple[str, str], float]:
            text = requests.get(f"{base}/metrics", timeout=5).text
            return {(sample.name, sample.labels.get("group", "")): sample.value
                    for family in text_string_to_metric_families(text) for sample in family.samples}  # fmt: skip

        with workers(env, ("projector",)):  # creates the group, then stops: what follows is not consumed
            wait_for(lambda: env.redis.exists(f"{env.settings.key_prefix}:events:3"), what="the groups")
        with workers(env, ("relay",)) as (relay,):
            for _ in range(3):
                assert requests.post(f"{base}/orders", json=ORDER, headers=token, timeout=5).status_code == 201
            wait_for(lambda: env.unpublished() == 0, what="publishing")
            relay.kill()
        for _ in range(2):  # committed while no relay runs: the backlog
            assert requests.post(f"{base}/orders", json=ORDER, headers=token, timeout=5).status_code == 201
        found = gauges()
    assert found[("orderstream_consumer_lag_events", "order_summaries")] == 3
    assert found[("orderstream_consumer_pending_entries", "order_summaries")] == 0
    assert found[("orderstream_consumer_lag_seconds", "order_summaries")] > 0
    assert found[("orderstream_relay_backlog_events", "")] == 2


def test_two_upkeeps_at_once_trim_and_purge_everything_once(fresh_env: Env) -> None:
    """Two instances' schedulers may enqueue the same job together: both runs succeed, and what they
    remove adds up to what there was."""
    env = fresh_env
    with workers(env, ("relay",), ("projector",)):
        write_orders(env, 20)
        wait_for(lambda: env.unpublished() == 0 and converged(env), what="publishing and projecting")
    rows = env.scalar("SELECT count(*) FROM outbox")
    for n in range(300):
        add_idempotency_key(env, f"expired-{n}", -1)
    client = streams_client(env.settings)
    trimmed: list[int] = []
    purged: list[int] = []
    barrier = threading.Barrier(4)

    def trim() -> None:
        barrier.wait()
        trimmed.append(trim_acknowledged(env.settings, env.engine, client))

    def purge() -> None:
        barrier.wait()
        while True:
            with env.engine.begin() as conn:
                if not (count := idempotency.purge_expired(conn, limit=50)):
                    return
            purged.append(count)

    threads = [threading.Thread(target=f) for f in (trim, trim, purge, purge)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(trimmed) == 2 and sum(trimmed) == rows and stream_length(env) == 0
    assert sum(purged) == 300 and env.scalar("SELECT count(*) FROM idempotency_keys") == 0
