"""Chaos run: steady command load over HTTP while projectors and relays are killed and restarted
and Redis is killed (losing up to a second of writes) and started again, at random intervals.

At the end it waits for the projections to settle and checks that every committed event is reflected
exactly once (the projection equals a rebuild from the log), and that no command got a 5xx.

    make chaos CHAOS_ARGS="--duration 600"
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from app import schema
from app.config import Settings
from app.embedded import free_port
from tests.faults import RedisServer
from tests.projections import rebuilt, snapshot
from tests.support import BIN, GUNICORN, Env, answers, isolated_env, wait_for

ITEM = {"sku": "A", "quantity": 1, "unit_price": "2.50"}


@dataclass
class Report:
    duration: float
    commands_sent: int = 0
    commands_accepted: int = 0
    commands_refused_4xx: int = 0
    server_errors_5xx: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    events_in_log: int = 0
    events_lost: int = 0
    duplicates_applied: int = 0
    converge_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.events_lost == 0 and self.duplicates_applied == 0 and self.server_errors_5xx == 0

    def __str__(self) -> str:
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        return "\n".join(
            [
                f"chaos run of {self.duration:.0f}s: {'PASSED' if self.ok else 'FAILED'}",
                f"  commands sent {self.commands_sent}, accepted {self.commands_accepted},"
                f" refused (4xx) {self.commands_refused_4xx}, server errors (5xx) {self.server_errors_5xx}",
                f"  faults injected: {faults}",
                f"  events in the log {self.events_in_log}, lost {self.events_lost},"
                f" applied twice {self.duplicates_applied}",
                f"  converged {self.converge_seconds:.1f}s after the last fault",
            ]
        )


class Cluster:
    """web + 2 relays + 2 projectors on one environment, each process restartable."""

    def __init__(self, env: Env, port: int) -> None:
        self.env, self.port = env, port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.specs = {
            "web": [*GUNICORN, "-b", f"127.0.0.1:{port}", "wsgi:app"],
            "relay-1": [str(BIN / "orderstream"), "relay"],
            "relay-2": [str(BIN / "orderstream"), "relay"],
            "projector-1": [str(BIN / "orderstream"), "projector", "--name", "projector-1"],
            "projector-2": [str(BIN / "orderstream"), "projector", "--name", "projector-2"],
        }
        self.log = open(os.devnull, "wb")  # noqa: SIM115

    def start(self, name: str) -> None:
        env = self.env.process_env(ORDERSTREAM_CLAIM_IDLE_MS="1000", ORDERSTREAM_RETENTION_INTERVAL_MS="500")
        self.procs[name] = subprocess.Popen(
            self.specs[name], env=env, cwd=Path(__file__).resolve().parents[2], stdout=self.log, stderr=self.log
        )

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(30)


def drive(base: str, token: str, stop: threading.Event, report: Report, lock: threading.Lock) -> None:
    """One client: order lifecycles, one command after another, until stopped."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    rng = random.Random()

    def send(method: str, path: str, body: dict[str, object] | None = None) -> requests.Response | None:
        try:
            response = session.request(method, base + path, json=body, timeout=10)
        except requests.RequestException:
            return None  # the web process was not restarted in this run, so this should not happen
        with lock:
            report.commands_sent += 1
            if response.status_code < 300:
                report.commands_accepted += 1
            elif response.status_code < 500:
                report.commands_refused_4xx += 1
            else:
                report.server_errors_5xx += 1
        return response

    while not stop.is_set():
        created = send("POST", "/orders", {"customer_id": f"chaos-{rng.randint(1, 50)}", "currency": "EUR",
                                           "items": [ITEM]})  # fmt: skip
        if created is None or created.status_code != 201:
            continue
        order = f"/orders/{created.json()['order_id']}"
        extra = rng.randint(0, 3)
        for n in range(extra):
            send("POST", f"{order}/items", {**ITEM, "sku": f"S{n}"})
        if rng.random() < 0.2:
            send("POST", f"{order}/cancellation", {"reason": "chaos"})
            continue
        send("POST", f"{order}/payments", {"amount": f"{2.5 * (extra + 1):.2f}", "reference": "chaos"})
        send("POST", f"{order}/shipments", {"carrier": "DHL", "tracking_number": "T"})
        send("POST", f"{order}/delivery")


def inject(cluster: Cluster, redis_server: RedisServer, stop: threading.Event, report: Report, rng: random.Random,
           last_fault: list[float]) -> None:  # fmt: skip
    """Kill and restart projectors and relays, kill and start Redis, at random intervals."""
    while not stop.wait(rng.uniform(1.0, 4.0)):
        kind = rng.choice(["projector killed", "relay killed", "redis killed"])
        if kind == "redis killed":
            redis_server.kill()
            stop.wait(rng.uniform(0.5, 3.0))
            redis_server.start()
        else:
            name = f"{kind.split()[0]}-{rng.randint(1, 2)}"
            cluster.kill(name)
            stop.wait(rng.uniform(0.2, 2.0))
            cluster.start(name)
        report.faults[kind] += 1
        last_fault[0] = time.monotonic()


def check(env: Env, report: Report) -> None:
    """Compare the projection with the log: missing versions are lost events, extra rows duplicates."""
    report.events_in_log = int(env.scalar("SELECT count(*) FROM events"))
    report.events_lost = int(
        env.scalar(
            "SELECT coalesce(sum(e.v - coalesce(s.version, 0)), 0) FROM"
            " (SELECT stream_id, max(version) AS v FROM events GROUP BY stream_id) e"
            " LEFT JOIN order_summaries s ON s.order_id::text = e.stream_id"
        )
    )
    live, rebuild = snapshot(env), rebuilt(env)
    report.duplicates_applied = sum(  # rows the live projection has beyond the rebuild's (a multiset difference)
        sum((_rows(live[table]) - _rows(rebuild[table])).values()) for table in ("order_summaries", "order_items")
    )


def _rows(rows: list[dict[str, Any]]) -> Counter[tuple[tuple[str, Any], ...]]:
    """Rows as a multiset, so comparing two projections is linear, not quadratic, in their size."""
    return Counter(tuple(sorted(row.items())) for row in rows)


def run(base: Settings, duration: float, clients: int = 4, seed: int | None = None) -> Report:
    rng = random.Random(seed)
    report = Report(duration)
    with tempfile.TemporaryDirectory(prefix="orderstream-chaos-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis")
        redis_server.start()
        template = f"os_chaos_template_{uuid.uuid4().hex[:8]}"
        from tests.support import admin, database_url_for

        admin(base.database_url, f'CREATE DATABASE "{template}"')
        try:
            schema.upgrade(database_url_for(base.database_url, template))
            with isolated_env(base, template, redis_url=redis_server.url) as env:
                env = replace(env, settings=replace(env.settings, consumer_block_ms=200))
                _chaos(env, redis_server, duration, clients, rng, report)
        finally:
            redis_server.kill()
            admin(base.database_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    return report


def _chaos(env: Env, redis_server: RedisServer, duration: float, clients: int, rng: random.Random,
           report: Report) -> None:  # fmt: skip
    port = free_port()
    cluster = Cluster(env, port)
    for name in cluster.specs:
        cluster.start(name)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base_url}/healthz"), timeout=60, interval=0.2, what="the web process")
    stop, lock, last_fault = threading.Event(), threading.Lock(), [time.monotonic()]
    token = env.settings.admin_token or ""
    threads = [threading.Thread(target=drive, args=(base_url, token, stop, report, lock)) for _ in range(clients)]
    threads.append(threading.Thread(target=inject, args=(cluster, redis_server, stop, report, rng, last_fault)))
    try:
        for t in threads:
            t.start()
        stop.wait(duration)
        stop.set()
        for t in threads:
            t.join()
        wait_for(lambda: _settled(env), timeout=120, interval=0.2, what="the projections to settle")
        report.converge_seconds = time.monotonic() - last_fault[0]
        check(env, report)
    finally:
        cluster.stop_all()


def _settled(env: Env) -> bool:
    events = env.scalar("SELECT count(*) FROM events")
    return bool(env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load and faults")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    report = run(Settings.from_env(), args.duration, args.clients, args.seed)
    print(report)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
