"""Operating orderstream: health, readiness, metrics from every process, admin API, JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from flask.testing import FlaskClient

from app.platform.config import Settings
from tests.support import ORDER, Env, consumer_groups, wait_for, web_server, workers


def test_health_and_readiness_are_public(client: FlaskClient, env: Env) -> None:
    anonymous = client.application.test_client()
    assert anonymous.get("/healthz").status_code == 200
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"ready": True, "checks": {"postgresql": "ok", "redis": "ok", "migrations": "ok"}}


def test_readiness_fails_when_migrations_are_behind(fresh_env: Env) -> None:
    from app.entry.factory import create_app

    with fresh_env.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")
    ready = create_app(fresh_env.settings).test_client().get("/readyz")
    assert ready.status_code == 503 and ready.json["ready"] is False
    assert "run orderstream migrate" in ready.json["checks"]["migrations"]


def test_admin_api_shows_relay_streams_and_projections(fresh_env: Env) -> None:
    from app.entry.factory import create_app
    from tests.support import api_client

    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",)):
        assert client.post("/orders", json=ORDER).status_code == 201
        wait_for(lambda: client.get("/admin/relay").json["leader"], what="a relay leader")
        wait_for(lambda: fresh_env.scalar("SELECT count(*) FROM order_summaries") == 1, what="projecting")
        # the relay records an event as published just after XADD, so the projector may be first
        relay = wait_for(lambda: (r := client.get("/admin/relay").json)["backlog"] == 0 and r, what="no backlog")
        assert relay["leader"].startswith("orderstream-relay:")
        streams = client.get("/admin/streams").json
        assert len(streams) == fresh_env.settings.stream_partitions
        groups = [g for s in streams for g in s["groups"]]
        assert {g["name"] for g in groups} == {"order_summaries"} and all(g["consumers"] for g in groups)
        page = client.get("/admin")
        assert page.status_code == 200 and page.content_type.startswith("text/html")
        assert b"Relay" in page.data and fresh_env.settings.key_prefix.encode() in page.data


def test_one_scrape_sees_the_web_the_relay_and_the_projector(fresh_env: Env, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "ORDERSTREAM_RETENTION_INTERVAL_MS": "100"}
    auth = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
    with web_server(fresh_env, **extra) as base, workers(fresh_env, ("relay",), ("projector",), **extra):
        for _ in range(3):
            assert requests.post(f"{base}/orders", json=ORDER, headers=auth, timeout=5).status_code == 201

        def scraped() -> str | None:
            text = requests.get(f"{base}/metrics", timeout=5).text
            wanted = ('orderstream_events_applied_total{projection="order_summaries"} 3.0',
                      "orderstream_events_published_total 3.0",
                      # lag and pending, read from Redis at the scrape (workers/gauges.py)
                      'orderstream_consumer_pending_entries{group="order_summaries"}')  # fmt: skip
            return text if all(w in text for w in wanted) else None

        text = wait_for(scraped, timeout=30, what="metrics from every process")
    assert 'orderstream_events_appended_total{type="OrderCreated"} 3.0' in text
    assert 'orderstream_http_request_duration_seconds_count{endpoint="/orders",method="POST",status="201"} 3.0' in text
    assert 'orderstream_consumer_lag_events{group="order_summaries"}' in text
    assert "orderstream_relay_backlog_events" in text


@pytest.mark.parametrize("worker", ["relay", "projector"])
def test_logs_are_json_lines_carrying_the_request_id_through_the_workers(fresh_env: Env, worker: str) -> None:
    from app.entry.factory import create_app
    from tests.support import api_client

    client = api_client(create_app(fresh_env.settings))
    with workers(fresh_env, ("relay",), ("projector",), LOG_LEVEL="DEBUG") as (relay, projector):
        last_partition = f"{fresh_env.settings.key_prefix}:events:{fresh_env.settings.stream_partitions - 1}"
        wait_for(lambda: consumer_groups(fresh_env.redis, last_partition), what="the projector's consumer group")
        response = client.post("/orders", json=ORDER, headers={"X-Request-ID": f"trace-{worker}"})
        order_id = response.json["order_id"]
        target = relay if worker == "relay" else projector

        def traced() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in target.log().splitlines() if line.startswith("{")]
            return [line for line in lines if line.get("request_id") == f"trace-{worker}"]

        found = wait_for(traced, what=f"the {worker} to log the request id")
    assert found[0]["correlation_id"] == f"trace-{worker}" and found[0]["stream_id"] == order_id
    assert {"timestamp", "level", "logger", "event"} <= set(found[0])


def test_migrations_started_together_apply_once(base_settings: Settings) -> None:
    """Two launchers starting at once both migrate: one waits for the other, neither fails."""
    from tests.support import BIN, admin, database_url_for

    name = f"os_migrate_{uuid.uuid4().hex[:10]}"
    admin(base_settings.database_url, f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DATABASE_URL": database_url_for(base_settings.database_url, name),
               "REDIS_URL": base_settings.redis_url}  # fmt: skip
        runs = [subprocess.Popen([str(BIN / "orderstream"), "migrate"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT) for _ in range(3)]  # fmt: skip
        outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], outputs
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    finally:
        admin(base_settings.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
