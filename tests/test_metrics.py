"""/metrics as Prometheus reads it: exposition it accepts, label values from closed sets only, series
that exist before their first event, and no stale gauge from a process that has exited."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import replace
from email.message import Message
from http import HTTPStatus
from pathlib import Path

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from app.entry.factory import create_app
from app.eventlog.events import EVENT_TYPES
from app.platform.metrics import METHODS
from app.processes.embedded import free_port
from app.processes.launcher import REPO
from app.processes.supervision import read_procfile
from tests.support import ORDER, Env, admin, database_url_for, wait_for, web_server, workers
from workers.consumers import GROUPS

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="no Prometheus installed (apt-get install prometheus; .ci/run installs it)",
)


@pytest.fixture
def metrics_env(fresh_env: Env, tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory), "ORDERSTREAM_RETENTION_INTERVAL_MS": "100"}


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def test_label_values_come_from_closed_sets_whatever_clients_send(
    app: Flask, fresh_env: Env, metrics_env: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
    with web_server(fresh_env, **metrics_env) as base:
        for n in range(20):
            requests.request(f"FOO{n}", f"{base}/orders/{uuid.uuid4()}/weird-{n}", headers=auth, timeout=5)
            requests.get(f"{base}/no-such-{n}", headers=auth, timeout=5)
            requests.request(f"PROPFIND{n}", f"{base}/orders", headers=auth, timeout=5)
            requests.post(f"{base}/orders?x{n}=1", json={}, headers=auth, timeout=5)
        text = requests.get(f"{base}/metrics", timeout=5).text  # what every process wrote, merged
    assert "FOO" not in text and "PROPFIND" not in text and "weird" not in text and "no-such" not in text
    rules = {rule.rule for rule in app.url_map.iter_rules()} | {"unmatched"}
    closed = {
        "method": METHODS | {"other"},
        "endpoint": rules,
        "status": {str(s.value) for s in HTTPStatus},
        "type": set(EVENT_TYPES),
        "projection": set(GROUPS),
        "group": set(GROUPS),
        "process": {f"{p.name}.1" for p in read_procfile(REPO / "Procfile")}
        | {"postgres.1", "redis.1", "process-events"},
    }
    seen = 0
    for name, labels, _value in samples(text):
        if not name.startswith("orderstream_"):
            continue
        for label, value in labels.items():
            if label != "le":
                assert value in closed[label], (name, label, value)
                seen += 1
    assert seen > 10


def test_the_exposition_is_what_prometheus_expects(fresh_env: Env, metrics_env: dict[str, str]) -> None:
    with web_server(fresh_env, **metrics_env) as base, workers(fresh_env, ("relay",), ("projector",), **metrics_env):
        token = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
        assert requests.post(f"{base}/orders", json=ORDER, headers=token, timeout=5).status_code == 201
        response = wait_for(lambda: (r := requests.get(f"{base}/metrics", timeout=5)).text.count("consumer_lag") > 2
                            and r, what="the workers' metrics")  # fmt: skip
    header = Message()
    header["Content-Type"] = response.headers["Content-Type"]
    params = [key for key, _ in header.get_params()[1:]]
    assert header.get_content_type() == "text/plain" and sorted(params) == sorted(set(params)) == ["charset", "version"]
    assert header.get_param("version") == "0.0.4" and header.get_param("charset") == "utf-8"
    if PROMTOOL:  # its lint of names, types and help texts
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=response.content, capture_output=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr


def test_counters_of_known_label_sets_exist_at_zero_before_their_first_event(
    fresh_env: Env, metrics_env: dict[str, str]
) -> None:
    with web_server(fresh_env, **metrics_env) as base:
        text = requests.get(f"{base}/metrics", timeout=5).text
    values = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples(text)}
    for projection in GROUPS:  # the projections and the fulfilment process manager
        assert values[("orderstream_dead_letters_total", (("projection", projection),))] == 0
        assert values[("orderstream_events_applied_total", (("projection", projection),))] == 0
        assert values[("orderstream_entries_taken_over_total", (("projection", projection),))] == 0
    for event_type in EVENT_TYPES:
        assert values[("orderstream_events_appended_total", (("type", event_type),))] == 0


def test_gauges_of_processes_that_exited_are_dropped_counters_kept(fresh_env: Env, metrics_env: dict[str, str]) -> None:
    """A finished rebuild's progress (its rq work-horse exited) stops being reported; what a killed
    relay counted stays counted, and the lag, measured from Redis at each scrape, stays too."""
    token = {"Authorization": f"Bearer {fresh_env.settings.admin_token}"}
    with web_server(fresh_env, **metrics_env) as base, workers(fresh_env, ("projector",), **metrics_env):

        def scrape() -> dict[str, float]:
            text = requests.get(f"{base}/metrics", timeout=5).text
            return {name + str(sorted(labels.items())): value for name, labels, value in samples(text)}

        with workers(fresh_env, ("relay",), **metrics_env) as (relay,):
            for _ in range(3):
                assert requests.post(f"{base}/orders", json=ORDER, headers=token, timeout=5).status_code == 201
            lag = "orderstream_consumer_lag_events[('group', 'order_summaries')]"  # no process owns it
            wait_for(lambda: scrape().get("orderstream_events_published_total[]") == 3, what="the relay's metrics")
            wait_for(lambda: lag in scrape(), what="the lag")
            relay.kill()
        # The lag is read from Redis, not left by a process: it stays. Polled, since each web worker
        # serves what it measured in the last 2 s (workers/gauges.py), maybe before the groups existed.
        after = wait_for(lambda: found if lag in (found := scrape()) else None, what="the lag after the relay died")
        assert after["orderstream_events_published_total[]"] == 3  # what the dead relay published is still counted

        rebuild = requests.post(f"{base}/admin/projections/order_summaries/rebuild", headers=token, timeout=5).json()
        with workers(fresh_env, ("rqworker",), **metrics_env):
            wait_for(lambda: requests.get(base + rebuild["status_url"], headers=token, timeout=5).json()["status"]
                     == "finished", timeout=60, what="the rebuild")  # fmt: skip
            directory = Path(metrics_env["PROMETHEUS_MULTIPROC_DIR"])
            wait_for(lambda: exited_gauge_files(directory), what="the work-horse, which reported progress, to exit")
            progress = "orderstream_rebuild_progress_ratio[('projection', 'order_summaries')]"
            assert progress not in scrape() and not exited_gauge_files(directory)


def exited_gauge_files(directory: Path) -> list[Path]:
    """Live-gauge files of processes that no longer exist."""
    import psutil

    return [
        path for path in directory.glob("gauge_live*.db") if not psutil.pid_exists(int(path.stem.rsplit("_", 1)[1]))
    ]


def test_dropping_an_exited_processes_gauges_is_safe_from_every_side_at_once(tmp_path: Path) -> None:
    """Scrapes and gunicorn's arbiter may drop the same files together: none of them may fail."""
    import threading

    from app.platform.metrics import forget_exited_processes, forget_process

    dead = 2**22 + 12345  # beyond the default pid_max: no process has it
    errors: list[BaseException] = []
    for _ in range(20):
        for mode in ("livemax", "livesum", "liveall"):
            (tmp_path / f"gauge_{mode}_{dead}.db").write_bytes(b"\0" * 16)
        barrier = threading.Barrier(6)

        def drop(scrape: bool, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                forget_exited_processes(tmp_path) if scrape else forget_process(dead, str(tmp_path))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=drop, args=(n % 2 == 0,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and list(tmp_path.iterdir()) == []


@needs_prometheus
def test_a_real_prometheus_scrapes_it(fresh_env: Env, metrics_env: dict[str, str], tmp_path: Path) -> None:
    with web_server(fresh_env, **metrics_env) as base:
        config = tmp_path / "prometheus.yml"
        config.write_text(textwrap.dedent(f"""\
            global: {{scrape_interval: 1s}}
            scrape_configs:
              - job_name: orderstream
                static_configs: [{{targets: ["{base.removeprefix('http://')}"]}}]
            """))  # fmt: skip
        assert subprocess.run([PROMTOOL or "", "check", "config", str(config)], capture_output=True).returncode == 0
        from app.processes.embedded import free_port

        port = free_port()
        server = subprocess.Popen(
            [PROMETHEUS or "", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            api = f"http://127.0.0.1:{port}/api/v1"

            def target() -> dict[str, object] | None:
                try:
                    active = requests.get(f"{api}/targets", timeout=2).json()["data"]["activeTargets"]
                except (requests.RequestException, ValueError):
                    return None
                return active[0] if active and active[0]["health"] != "unknown" else None

            scraped = wait_for(target, timeout=30, interval=0.5, what="Prometheus to scrape the service")
            assert scraped["health"] == "up", scraped.get("lastError")
            query = 'orderstream_dead_letters_total{projection="order_summaries"}'
            result = wait_for(lambda: requests.get(f"{api}/query", params={"query": query}, timeout=2).json()["data"]
                              ["result"], timeout=15, interval=0.5, what="the dead-letter counter")  # fmt: skip
            assert result[0]["value"][1] == "0"
        finally:
            server.terminate()
            server.wait(20)


def test_metrics_answer_when_what_the_gauges_measure_cannot_be_read(env: Env) -> None:
    """The scrape-time gauges read PostgreSQL and Redis; a database without our tables (not migrated)
    and a Redis that refuses connections leave those series out, and /metrics still answers 200."""
    name = f"os_unmigrated_{uuid.uuid4().hex[:8]}"
    admin(env.settings.database_url, f"CREATE DATABASE {name}")
    try:
        broken = replace(env.settings, database_url=database_url_for(env.settings.database_url, name),
                         streams_redis_url=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip
        answer = create_app(broken).test_client().get("/metrics")
        assert answer.status_code == 200
        names = {family.name for family in text_string_to_metric_families(answer.text)}
        assert "orderstream_events_appended" in names  # the rest of the page is there
        assert not names & {"orderstream_relay_backlog_events", "orderstream_consumer_lag_events"}
    finally:
        admin(env.settings.database_url, f"DROP DATABASE {name} WITH (FORCE)")
