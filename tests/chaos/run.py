"""Chaos run: steady command load over HTTP while projectors, relays, the fulfilment process
manager, the webhooks dispatcher, the rq worker and the webhook sender are killed and Redis is
killed (losing up to a second of writes) and started again, at random intervals. The service runs
as `make run` runs it (`orderstream run`, two relays and two projectors): supervisord, not this
run, starts again what it kills. Some orders are of a SKU with little stock
(their clients wait for the reservation before paying, as a shop would), so reservations and
rejections race with the faults.

At the end it waits for the projections and the process manager to settle and checks that every
committed event is reflected exactly once (the projection equals a rebuild from the log), that no
command got a 5xx, and that the stock was never oversold: what each order holds is what its state
says it should, and no unit was reserved or shipped twice. A webhook receiver (failing one attempt
in ten with a 503) must have accepted every event, each as one delivery.

Projectors come back under a new consumer name (host and pid, as in production) and the idle claim
time is the shipped 30 s: a dead projector's entries come back only by being taken over (heartbeats,
workers/liveness.py); each projector kill happens mid-batch where it can be caught so. How long a
recovery takes is measured for every fault: from the moment it was injected until the projection
reflects every event committed before it was over and a killed projector's entries are acknowledged.

    make chaos CHAOS_ARGS="--duration 600"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
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

import redis
import requests
from sqlalchemy import text

from app.eventlog import store as eventstore
from app.eventlog.events import OrderStatus, inventory_stream
from app.eventlog.streams import stream_keys
from app.platform import schema
from app.platform.config import Settings
from app.processes.embedded import free_port
from app.processes.supervision import Supervisor, socket_url
from commands.order import Order
from commands.stock import load_sku
from tests.support import (
    BIN,
    Env,
    Receiver,
    RedisServer,
    answers,
    converged,
    isolated_env,
    reacted_to_all,
    rebuilt,
    snapshot,
    wait_for,
)

ITEM = {"sku": "A", "quantity": 1, "unit_price": "2.50"}
STOCKED, STOCK_UNITS = "STOCKED-1", 25  # a tracked SKU: fewer units than the orders that want one
STOCKED_ITEM = {**ITEM, "sku": STOCKED}
FAULT_KINDS = (
    "projector killed", "relay killed", "redis killed", "fulfilment killed", "webhooks killed", "worker killed",
    "sender killed",
)  # fmt: skip
SINGLE = ("fulfilment killed", "webhooks killed", "worker killed", "sender killed")  # one process of each runs
# Webhooks to a local receiver, retried within a second; a delivery whose rq job died with its
# worker (or with Redis) is sent again after 5 s.
WEBHOOKS = {
    "ORDERSTREAM_WEBHOOKS_ALLOW_PRIVATE": "1",
    "ORDERSTREAM_WEBHOOKS_BACKOFF_S": "0.2,0.5,1,1,1,1,1,1,1,1",
    "ORDERSTREAM_WEBHOOKS_LEASE_S": "5",
}
GROUP = "order_summaries"  # the projectors' group (the default projection)
TAKEN_OVER = re.compile(r"consumer (\S+) stopped its heartbeat; taking over")  # workers/consumer.py


@dataclass
class Report:
    duration: float
    commands_sent: int = 0
    commands_accepted: int = 0
    commands_refused_4xx: int = 0
    server_errors_5xx: int = 0
    server_errors: list[str] = field(default_factory=list)  # what each 5xx was, for the report
    erasures: int = 0  # customers' personal data erased amid the load (DELETE .../personal-data)
    faults: Counter[str] = field(default_factory=Counter)
    events_in_log: int = 0  # appended by the commands (the process manager's and the stock's apart)
    process_manager_events: int = 0
    stock_orders: Counter[str] = field(default_factory=Counter)  # orders of the stocked SKU, by outcome
    stock_mismatches: int = 0  # orders holding other than their state says, units reserved or shipped twice
    events_lost: int = 0
    duplicates_applied: int = 0
    webhook_events_missing: int = 0  # events the receiver never accepted
    webhook_deliveries_extra: int = 0  # deliveries recorded beyond one per event
    webhook_attempts: int = 0  # POSTs the receiver got (retries and repeats included)
    webhooks_drained_seconds: float = 0.0  # after the projections settled, until the receiver had every event
    recoveries: list[Fault] = field(default_factory=list)
    dead_consumers_left: int = 0
    live_consumers_robbed: int = 0  # taken over though never killed (a live one, thought dead)

    @property
    def converge_seconds(self) -> float:
        """From the last fault's injection until the projection reflected what was committed before
        it was over (under load the projection trails the log by milliseconds: it never "equals" it)."""
        return self.recoveries[-1].recovery_seconds if self.recoveries else 0.0

    @property
    def slowest(self) -> Fault | None:
        return max(self.recoveries, key=lambda f: f.recovery_seconds, default=None)

    @property
    def ok(self) -> bool:
        return (
            self.events_lost == 0
            and self.duplicates_applied == 0
            and self.server_errors_5xx == 0
            and self.stock_mismatches == 0
            and self.webhook_events_missing == 0
            and self.webhook_deliveries_extra == 0
        )

    def __str__(self) -> str:
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        return "\n".join(
            [
                f"chaos run of {self.duration:.0f}s: {'PASSED' if self.ok else 'FAILED'}",
                f"  commands sent {self.commands_sent}, accepted {self.commands_accepted},"
                f" refused (4xx) {self.commands_refused_4xx}, server errors (5xx) {self.server_errors_5xx}",
                f"  faults injected: {faults}",
                *(f"  5xx: {error}" for error in self.server_errors),
                f"  events in the log {self.events_in_log} (and {self.process_manager_events} of the process"
                f" manager), lost {self.events_lost}, applied twice {self.duplicates_applied}",
                f"  orders of {STOCKED} ({STOCK_UNITS} units): "
                + (", ".join(f"{k} {n}" for k, n in sorted(self.stock_orders.items())) or "none")
                + f"; stock mismatches {self.stock_mismatches}; personal data erasures {self.erasures}",
                f"  webhooks: events never accepted {self.webhook_events_missing}, deliveries beyond one per event"
                f" {self.webhook_deliveries_extra}, POSTs {self.webhook_attempts}; every event there"
                f" {self.webhooks_drained_seconds:.1f}s after the projections settled",
                f"  converged {self.converge_seconds:.1f}s after the last fault ({self._described(-1)})",
                f"  slowest recovery from a fault {self.slowest_recovery_seconds:.1f}s"
                f" ({self._described(self.recoveries.index(self.slowest) if self.slowest else -1)})",
                f"  killed projectors left entries pending {len(self.takeovers)} times"
                f" ({sum(f.left_pending for f in self.takeovers)} entries), recovered in at most"
                f" {max((f.recovery_seconds for f in self.takeovers), default=0):.1f}s;"
                f" dead consumer names left in the group {self.dead_consumers_left};"
                f" live consumers whose entries were taken {self.live_consumers_robbed}",
            ]
        )

    @property
    def takeovers(self) -> list[Fault]:
        """The kills that left entries pending: only a takeover by another consumer brings them back."""
        return [fault for fault in self.recoveries if fault.left_pending]

    @property
    def slowest_recovery_seconds(self) -> float:
        return self.slowest.recovery_seconds if self.slowest else 0.0

    def _described(self, n: int) -> str:
        if not self.recoveries:
            return "none"
        fault = self.recoveries[n]
        later = sum(fault.began < other.began < (fault.recovered or float("inf")) for other in self.recoveries)
        overlap = f"; {later} later fault{'s' if later > 1 else ''} began before it was over" if later else ""
        return fault.describe() + overlap


@dataclass
class Fault:
    """One injected fault and when the projection had recovered from it (monotonic seconds)."""

    kind: str
    began: float
    ended: float  # the killed process or server started again
    position: int  # the log's newest position when it was over
    dead_consumer: str | None = None  # a killed projector's consumer name
    left_pending: int = 0  # entries it had read and not acknowledged when it died
    recovered: float | None = None  # the first look that found everything put right (see Recoveries)

    @property
    def recovery_seconds(self) -> float:
        return (self.recovered or float("inf")) - self.began

    def describe(self) -> str:
        return f"{self.kind}, restarted after {self.ended - self.began:.1f}s"


class Recoveries:
    """Looks, every 0.1 s, for the faults whose events the projection now fully reflects."""

    def __init__(self, env: Env) -> None:
        self.env, self.lock = env, threading.Lock()
        self.faults: list[Fault] = []

    def record(self, kind: str, began: float, dead_consumer: str | None = None, left_pending: int = 0) -> None:
        ended = time.monotonic()
        position = int(self.env.scalar("SELECT coalesce(max(position), 0) FROM events"))
        with self.lock:
            self.faults.append(Fault(kind, began, ended, position, dead_consumer, left_pending))

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            self.look()

    def look(self) -> bool:
        """Mark the faults recovered by now; True when all are. A fault is recovered when the projection
        reflects every event committed before it was over (in order: a later fault's events include an
        earlier's) and a killed projector's entries are all acknowledged: its next events of the same
        orders would fill the projection's gaps from the log, but only a takeover empties its pending
        entries (the idle-time claim would wait 30 s)."""
        with self.lock:
            waiting = [fault for fault in self.faults if fault.recovered is None]
        for fault in waiting:
            if self.env.scalar(_BEHIND, p=fault.position):
                return False
            if fault.kind == "fulfilment killed" and not reacted_to_all(self.env, fault.position):
                return False
            if fault.left_pending and _pending(self.env, fault.dead_consumer or "") != 0:
                continue
            fault.recovered = time.monotonic()
        return all(fault.recovered is not None for fault in waiting)


ORDER_STREAMS = "stream_id NOT LIKE '%:%'"  # order streams are bare UUIDs
# Some order has an event at or before position :p that its projected row does not reflect yet.
_BEHIND = (
    "SELECT EXISTS (SELECT 1 FROM (SELECT stream_id, max(version) AS v FROM events WHERE position <= :p"
    f" AND {ORDER_STREAMS} GROUP BY stream_id) e LEFT JOIN order_summaries s ON s.order_id::text = e.stream_id"
    " WHERE coalesce(s.version, 0) < e.v)"
)


class Cluster:
    """`orderstream run --concurrency relay=2,projector=2` on one environment: what `make run` runs,
    supervisord restarting whatever the run kills (the run only kills; it never starts anything)."""

    def __init__(self, env: Env, port: int, logs: Path) -> None:
        self.env, self.port, self.logs = env, port, logs
        self.log = logs / "orderstream-run.log"
        self.launcher: subprocess.Popen[bytes] | None = None

    def start_all(self) -> None:
        # The shipped claim idle time (30 s): only the heartbeat takeover can bring entries back sooner;
        # the crash-loop limit raised: this run kills the same process far more often than any crash loop.
        env = self.env.process_env(
            PORT=str(self.port), ORDERSTREAM_DATA_DIR=str(self.logs / "data"), ORDERSTREAM_CLAIM_IDLE_MS="30000",
            ORDERSTREAM_RETENTION_INTERVAL_MS="500", ORDERSTREAM_CRASH_LOOP_EXITS="1000", WEB_CONCURRENCY="2",
            **WEBHOOKS,
        )  # fmt: skip
        self.launcher = subprocess.Popen(
            [str(BIN / "orderstream"), "run", "--concurrency", "relay=2,projector=2"], env=env,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    @property
    def supervisor(self) -> Supervisor:
        assert self.launcher is not None
        return Supervisor(socket_url(self.logs / "data" / "run" / str(self.launcher.pid)))

    def pid(self, name: str) -> int:
        """The pid of a supervised process (relay.1, projector.2, ...), once it runs (never 0: a
        signal to pid 0 would reach this run's own process group)."""
        return int(wait_for(lambda: next(p["pid"] for p in self.supervisor.processes() if p["name"] == name),
                            timeout=30, what=f"{name} to have a pid"))  # fmt: skip

    def kill(self, name: str) -> int:
        """kill -9 a process; its pid."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def restarted(self, name: str, killed: int) -> None:
        """Wait until supervisord runs the process again (under a new pid)."""

        def running() -> bool:
            return any(p["name"] == name and p["statename"] == "RUNNING" and p["pid"] != killed
                       for p in self.supervisor.processes())  # fmt: skip

        wait_for(running, timeout=30, what=f"{name} to run again")

    def kill_mid_batch(self, name: str, patience: float = 1.0) -> tuple[int, int]:
        """kill -9 a projector, if it can be caught within `patience` holding entries it read and has not
        acknowledged (frozen with SIGSTOP for each look); its pid, and how many it held."""
        pid, deadline = self.pid(name), time.monotonic() + patience
        while True:
            os.kill(pid, signal.SIGSTOP)
            held = _pending(self.env, self.consumer(pid)) or 0
            if held or time.monotonic() > deadline:
                break
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        return pid, held

    @staticmethod
    def consumer(pid: int) -> str:
        """The consumer name a projector process reads under (host and pid)."""
        return f"{socket.gethostname()}-{pid}"

    def live_consumers(self) -> set[str]:
        return {self.consumer(p["pid"]) for p in self.supervisor.processes() if p["name"].startswith("projector")}

    def taken_over(self) -> set[str]:
        """The consumers whose entries a projector took over, as the projectors logged it."""
        return set(TAKEN_OVER.findall(self.log.read_text(errors="replace")))

    def stop_all(self) -> None:
        if self.launcher is not None and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGTERM)
            self.launcher.wait(120)


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
                report.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    while not stop.is_set():
        stocked = rng.random() < 0.3
        customer = f"chaos-{rng.randint(1, 50)}"
        personal = PERSONAL if rng.random() < 0.3 else {}  # sealed under the customer's key
        created = send("POST", "/orders", {"customer_id": customer, "currency": "EUR",
                                           "items": [STOCKED_ITEM if stocked else ITEM], **personal})  # fmt: skip
        if rng.random() < 0.03:  # the customer's right to erasure, amid everything else
            erase(session, base, customer, report, lock)
        if created is None or created.status_code != 201:
            continue
        order = f"/orders/{created.json()['order_id']}"
        extra = rng.randint(0, 3)
        for n in range(extra):
            send("POST", f"{order}/items", {**ITEM, "sku": f"S{n}"})
        if stocked and _reservation(session, base + order, stop) != "reserved":
            continue  # rejected (or the run is over): nothing to pay for
        if rng.random() < 0.2:
            send("POST", f"{order}/cancellation", {"reason": "chaos"})
            continue
        send("POST", f"{order}/payments", {"amount": f"{2.5 * (extra + 1):.2f}", "reference": "chaos"})
        send("POST", f"{order}/shipments", {"carrier": "DHL", "tracking_number": "T"})
        send("POST", f"{order}/delivery")


PERSONAL = {
    "email": "chaos@example.org",
    "shipping_address": {
        "name": "Chaos Customer",
        "line1": "1 Entropy Lane",
        "city": "Lisbon",
        "postal_code": "1000-001",
        "country": "PT",
    },
}


def erase(session: requests.Session, base: str, customer: str, report: Report, lock: threading.Lock) -> None:
    """DELETE the customer's personal data (not a command of the order lifecycles: counted apart)."""
    with contextlib.suppress(requests.RequestException):
        response = session.delete(f"{base}/customers/{customer}/personal-data", timeout=10)
        with lock:
            report.erasures += response.status_code == 200
            if response.status_code >= 500:
                report.server_errors_5xx += 1
                report.server_errors.append(f"DELETE personal data: {response.status_code} {response.text[:300]}")


def _reservation(session: requests.Session, url: str, stop: threading.Event, timeout: float = 30) -> str | None:
    """The order's fulfilment state once the process manager has decided (reserved or rejected), as a
    shop's client waits for it before taking the payment; None if the run stops first."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            state = str(session.get(url, timeout=10).json()["fulfilment"]["state"])
            if state != "reserving":
                return state
        stop.wait(0.05)
    return None


def inject(cluster: Cluster, redis_server: RedisServer, stop: threading.Event, report: Report, rng: random.Random,
           recoveries: Recoveries) -> None:  # fmt: skip
    """Kill projectors, relays and the process manager (supervisord restarts them), kill and start
    Redis, at random intervals."""
    kinds: list[str] = []
    while not stop.wait(rng.uniform(1.0, 4.0)):
        kinds = kinds or rng.sample(FAULT_KINDS, len(FAULT_KINDS))  # each kind once per round, in random order
        kind = kinds.pop()
        began, dead, left_pending = time.monotonic(), None, 0
        if kind == "redis killed":
            redis_server.kill()
            stop.wait(rng.uniform(0.5, 3.0))
            redis_server.start()
        else:
            name = f"{kind.split()[0]}.{rng.randint(1, 2) if kind not in SINGLE else 1}"
            if kind == "projector killed":  # mid-batch if possible: the case a takeover is for
                pid, left_pending = cluster.kill_mid_batch(name)
                dead = cluster.consumer(pid)
            else:
                pid = cluster.kill(name)
                if kind in ("fulfilment killed", "webhooks killed"):  # its restarted self takes its entries over
                    dead = cluster.consumer(pid)
            cluster.restarted(name, pid)  # supervisord starts it again: the fault is over when it runs
        report.faults[kind] += 1
        recoveries.record(kind, began, dead, left_pending)


def _pending(env: Env, consumer: str) -> int | None:
    """Entries delivered to a (dead) consumer and never acknowledged; None if Redis does not answer."""
    total = 0
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        try:
            summary = env.redis.xpending(key, GROUP)
        except redis.RedisError:
            return None
        total += sum(c["pending"] for c in summary["consumers"] if c["name"].decode() == consumer)
    return total


def _consumers(env: Env) -> set[str]:
    names: set[str] = set()
    for key in stream_keys(env.settings.key_prefix, env.settings.stream_partitions):
        with contextlib.suppress(redis.RedisError):
            names |= {c["name"].decode() for c in env.redis.xinfo_consumers(key, GROUP)}
    return names


def check(env: Env, report: Report) -> None:
    """Compare the projection with the log: missing versions are lost events, extra rows duplicates."""
    report.events_in_log = int(
        env.scalar(f"SELECT count(*) FROM events WHERE {ORDER_STREAMS} AND metadata->>'actor' <> 'fulfilment'")
    )
    report.process_manager_events = int(
        env.scalar("SELECT count(*) FROM events WHERE metadata->>'actor' = 'fulfilment'")
    )
    report.events_lost = int(
        env.scalar(
            "SELECT coalesce(sum(e.v - coalesce(s.version, 0)), 0) FROM"
            f" (SELECT stream_id, max(version) AS v FROM events WHERE {ORDER_STREAMS} GROUP BY stream_id) e"
            " LEFT JOIN order_summaries s ON s.order_id::text = e.stream_id"
        )
    )
    live, rebuild = snapshot(env), rebuilt(env)
    report.duplicates_applied = sum(  # rows the live projection has beyond the rebuild's (a multiset difference)
        sum((_rows(live[table]) - _rows(rebuild[table])).values()) for table in ("order_summaries", "order_items")
    )


def check_stock(env: Env, report: Report) -> None:
    """What each order of the stocked SKU holds is what its state says; nothing was reserved, released
    or shipped twice; the stock never went below what it holds. Folded from the log itself."""
    with env.engine.connect() as conn:
        stock = load_sku(conn, STOCKED)
        history = eventstore.load(conn, inventory_stream(STOCKED))
        ids = [r[0] for r in conn.execute(text(
            "SELECT DISTINCT stream_id FROM events WHERE type = 'OrderCreated' AND payload->'lines'->0->>'sku' = :s"
        ), {"s": STOCKED})]  # fmt: skip
        orders = [Order.fold(i, (e.domain_event() for e in eventstore.load(conn, i))) for i in ids]
    moves = Counter((e.type, e.payload.get("order_id")) for e in history if e.type != "StockReceived")
    report.stock_mismatches = sum(n - 1 for n in moves.values()) + (stock.on_hand < stock.reserved)
    shipped = {order_id for kind, order_id in moves if kind == "UnitsShipped"}
    for order in orders:
        holds = order.status in (OrderStatus.PENDING, OrderStatus.PAID) and order.reserved is not None
        outcome = order.status.value if order.status is not OrderStatus.PENDING or holds else "waiting"
        report.stock_orders[outcome] += 1
        if stock.reservations.get(order.id, 0) != (1 if holds else 0):
            report.stock_mismatches += 1
        was_shipped = order.status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED)
        if was_shipped != (order.id in shipped):
            report.stock_mismatches += 1
    if stock.on_hand != STOCK_UNITS - len(shipped):
        report.stock_mismatches += 1


def check_webhooks(env: Env, receiver: Receiver, report: Report) -> None:
    """Every event reached the receiver (at least once: it deduplicates by webhook-id), recorded as
    one delivery, however often the dispatcher, the rq worker or Redis died."""
    events = int(env.scalar("SELECT count(*) FROM events"))
    began = time.monotonic()
    with contextlib.suppress(AssertionError):
        wait_for(lambda: len(receiver.accepted_ids()) >= events, timeout=120, interval=0.2)
    report.webhooks_drained_seconds = time.monotonic() - began
    accepted = {(r.message["data"]["stream_id"], r.message["data"]["version"]) for r in receiver.messages()
                if r.answer.startswith("2")}  # fmt: skip
    logged = {(r["stream_id"], r["version"]) for r in env.rows("SELECT stream_id, version FROM events")}
    report.webhook_events_missing = len(logged - accepted)
    report.webhook_deliveries_extra = int(env.scalar("SELECT count(*) FROM webhook_deliveries")) - events
    report.webhook_attempts = len(receiver.messages())


def _rows(rows: list[dict[str, Any]]) -> Counter[tuple[tuple[str, Any], ...]]:
    """Rows as a multiset, so comparing two projections is linear, not quadratic, in their size."""
    return Counter(
        tuple(sorted((k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in row.items()))
        for row in rows
    )  # fmt: skip  (sealed personal data is a JSON object: hashed as its text)


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
                _chaos(env, redis_server, duration, clients, rng, report, Path(tmp))
        finally:
            redis_server.kill()
            admin(base.database_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    return report


def _chaos(env: Env, redis_server: RedisServer, duration: float, clients: int, rng: random.Random,
           report: Report, logs: Path) -> None:  # fmt: skip
    port = free_port()
    cluster = Cluster(env, port, logs)
    cluster.start_all()
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base_url}/healthz"), timeout=90, interval=0.2, what="orderstream run to serve")
    token = env.settings.admin_token or ""
    receiver = Receiver([503, *[200] * 9] * 100_000)  # registered first: it hears of every event
    registered = requests.post(f"{base_url}/admin/webhooks", json={"url": receiver.url, "event_types": ["*"]},
                               headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
    assert registered.status_code == 201, registered.text
    receipt = {"quantity": STOCK_UNITS, "reference": "chaos"}
    received = requests.post(f"{base_url}/inventory/{STOCKED}/receipts", json=receipt,
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
    assert received.status_code == 201, received.text
    stop, lock, recoveries = threading.Event(), threading.Lock(), Recoveries(env)
    threads = [threading.Thread(target=drive, args=(base_url, token, stop, report, lock)) for _ in range(clients)]
    threads.append(threading.Thread(target=inject, args=(cluster, redis_server, stop, report, rng, recoveries)))
    watching = threading.Event()
    watcher = threading.Thread(target=recoveries.watch, args=(watching,))
    try:
        watcher.start()
        for t in threads:
            t.start()
        stop.wait(duration)
        stop.set()
        for t in threads:
            t.join()
        watching.set()
        watcher.join()
        wait_for(recoveries.look, timeout=120, interval=0.1, what="the projection to recover from every fault")
        report.recoveries = recoveries.faults
        wait_for(lambda: _settled(env), timeout=120, interval=0.2, what="the projections to settle")
        check(env, report)
        check_stock(env, report)
        check_webhooks(env, receiver, report)
        # The dead names leave the group (taken over, then removed) within seconds of their death.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: _consumers(env) <= cluster.live_consumers(), timeout=15, interval=0.2)
        report.dead_consumers_left = len(_consumers(env) - cluster.live_consumers())
        killed = {fault.dead_consumer for fault in report.recoveries}
        report.live_consumers_robbed = len(cluster.taken_over() - killed)
    finally:
        watching.set()
        cluster.stop_all()
        receiver.close()


def _settled(env: Env) -> bool:
    """The projection reflects every order event, and the process manager has reacted to each."""
    return converged(env) and reacted_to_all(env)


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
