"""`orderstream run` (what `make run` starts) supervises every process: kill -9 any of them under
load and it runs again within seconds while the others serve, and nothing is lost or applied twice;
one that keeps crashing is reported failed; a stop leaves nothing behind; instances keep apart.

These run `orderstream run` on this module's database and Redis (the embedded servers under
supervision are tested in tests/test_run.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from app.processes.embedded import free_port
from app.processes.supervision import Supervisor, socket_url
from tests.support import BIN, ORDER, Env, answers, converged, reacted_to_all, rebuilt, snapshot, wait_for


@dataclass
class Instance:
    """One `orderstream run`: its launcher, base URL, run directory and supervisord."""

    proc: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    log: Path
    auth: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run" / str(self.proc.pid)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(socket_url(self.run_dir))

    def processes(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.supervisor.processes() if p["group"] != "process-events"}

    def metrics(self) -> str:
        return requests.get(f"{self.base}/metrics", timeout=10).text

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.base}/admin/health", headers=self.auth, timeout=10).json()  # type: ignore[no-any-return]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(90)


@contextlib.contextmanager
def orderstream_run(env: Env, *args: str, data_dir: Path | None = None) -> Iterator[Instance]:
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="orderstream-sup-"))
    port = free_port()
    log = data_dir / f"run-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(BIN / "orderstream"), "run", *args],
        env=env.process_env(PORT=str(port), ORDERSTREAM_DATA_DIR=str(data_dir), WEB_CONCURRENCY="2"),
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    instance = Instance(
        proc, f"http://127.0.0.1:{port}", data_dir, log, {"Authorization": f"Bearer {env.settings.admin_token}"}
    )
    try:
        wait_for(lambda: answers(f"{instance.base}/healthz") and proc.poll() is None, timeout=90, interval=0.2,
                 what="orderstream run to serve")  # fmt: skip
        wait_for(lambda: all(p["statename"] == "RUNNING" for p in instance.processes().values()), timeout=60,
                 what="every process to run")  # fmt: skip
        yield instance
    except BaseException:
        lines = [line for line in log.read_text().splitlines() if '"logger": "access"' not in line]
        print("\n".join(lines[-80:]))
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Load:
    """Clients placing and paying orders until stopped; what was accepted, what failed when."""

    base: str
    auth: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    accepted: list[tuple[str, int]] = field(default_factory=list)  # (order id, version) answered 2xx
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            placed = self._send(session, "/orders", ORDER)
            if placed is not None:
                self._send(session, f"/orders/{placed}/payments", {"amount": "19.98", "reference": "sup"})

    def _send(self, session: requests.Session, path: str, body: dict[str, Any]) -> str | None:
        try:
            answer = session.post(self.base + path, json=body, headers=self.auth, timeout=10)
        except requests.RequestException as exc:
            self.failures.append(type(exc).__name__)
            return None
        if answer.status_code >= 300:
            self.failures.append(str(answer.status_code))
            return None
        self.accepted.append((answer.json()["order_id"], answer.json()["version"]))
        return str(answer.json()["order_id"])


def _web_workers(instance: Instance) -> list[int]:
    return [child.pid for child in psutil.Process(instance.processes()["web.1"]["pid"]).children()]


def _gunicorn_worker(instance: Instance) -> int:
    return _web_workers(instance)[0]


def _replaced(instance: Instance, pid: int) -> bool:
    workers = _web_workers(instance)
    return pid not in workers and len(workers) == 2


def test_every_process_killed_under_load_runs_again_and_nothing_is_lost_or_applied_twice(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        load = Load(instance.base, instance.auth)
        clients = [threading.Thread(target=load.run) for _ in range(3)]
        for client in clients:
            client.start()
        try:
            wait_for(lambda: len(load.accepted) > 20, what="orders to flow")
            killed = []
            # a gunicorn worker (its master replaces it), then every supervised process, whatever the
            # Procfile holds: web master, relay, projectors, rq worker, and any process added later
            victims: list[tuple[str, int]] = [("gunicorn worker", _gunicorn_worker(instance))]
            victims += [(name, info["pid"]) for name, info in sorted(instance.processes().items())]
            for name, pid in victims:
                before = len(load.failures)
                os.kill(pid, signal.SIGKILL)
                if name == "gunicorn worker":
                    wait_for(lambda pid=pid: _replaced(instance, pid), what="a new gunicorn worker")
                else:
                    wait_for(lambda name=name, pid=pid: (p := instance.processes()[name])["statename"] == "RUNNING"
                             and p["pid"] != pid, timeout=20, what=f"{name} to run again")  # fmt: skip
                accepted = len(load.accepted)
                wait_for(lambda accepted=accepted: len(load.accepted) > accepted + 5, what=f"orders after {name}")
                if not name.startswith(("web", "gunicorn")):  # only the web's own restart may cost requests
                    assert load.failures[before:] == [], (name, load.failures[before:])
                killed.append(name)
        finally:
            load.stop.set()
            for client in clients:
                client.join()
        wait_for(lambda: _settled(fresh_env, load.accepted), timeout=60, what="the projection to settle")
        health = instance.health()
        metrics = instance.metrics()
    assert {"web.1", "relay.1", "projector.1", "sales.1", "worker.1"} <= set(killed)
    live, rebuild = snapshot(fresh_env), rebuilt(fresh_env)
    assert live["order_summaries"] == rebuild["order_summaries"] and live["order_items"] == rebuild["order_items"]
    assert health["status"] == "ok" and all(p["state"] == "running" for p in health["processes"])
    restarts = {p["name"]: p["restarts"] for p in health["processes"]}
    for name in killed[1:]:
        assert restarts[name] == 1, restarts
        assert f'orderstream_process_restarts_total{{process="{name}"}} 1.0' in metrics
        assert "SIGKILL" in next(p for p in health["processes"] if p["name"] == name)["last_exit"]["how"]


def _settled(env: Env, accepted: list[tuple[str, int]]) -> bool:
    """The projection shows every accepted command and every event, and the process manager (its
    StockReserved follows each order) has reacted to all of them."""
    shown = {r["order_id"]: r["version"] for r in env.rows("SELECT order_id::text, version FROM order_summaries")}
    return all(shown.get(order, 0) >= version for order, version in accepted) and reacted_to_all(env) and converged(env)


def test_a_process_that_keeps_crashing_is_reported_failed_not_restarted_forever(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        killed = 0
        for n in range(5):
            running = wait_for(lambda last=killed: _running_again(instance, "projector.1", last), timeout=20,
                               what=f"projector.1 running (crash {n})")  # fmt: skip
            killed = running["pid"]
            os.kill(killed, signal.SIGKILL)
        failed = wait_for(lambda: _given_up(instance, "projector.1"), timeout=40,  # it stops gracefully (<25 s)
                          what="the failure reported, the process stopped")  # fmt: skip
        projector = next(p for p in failed["processes"] if p["name"] == "projector.1")
        # four restarts for sure; a fifth may begin before the listener stops it
        assert "5 times within 60 s" in projector["failed"]["why"] and projector["restarts"] in (4, 5)
        metrics = instance.metrics()
        assert 'orderstream_process_failed{process="projector.1"} 1.0' in metrics
        assert 'orderstream_process_failed{process="relay.1"} 0.0' in metrics
        assert "PROCESS projector.1 FAILED" in instance.log.read_text()
        page = requests.get(f"{instance.base}/admin", headers=instance.auth, timeout=10).text
        assert "FAILED: projector.1" in page
        placed = requests.post(f"{instance.base}/orders", json=ORDER, headers=instance.auth, timeout=10)
        assert placed.status_code == 201  # the others serve meanwhile
        instance.supervisor.rpc.startProcess("app:projector.1", True)  # the operator's restart, once fixed
        recovered = wait_for(lambda: (h := instance.health())["status"] == "ok" and h, what="the process back")
        assert next(p for p in recovered["processes"] if p["name"] == "projector.1")["failed"] is None
        # a new window: one more crash is a restart, not a failure
        again = instance.processes()["projector.1"]["pid"]
        os.kill(again, signal.SIGKILL)
        wait_for(lambda: _running_again(instance, "projector.1", again), timeout=20, what="projector.1 back again")
        assert instance.health()["status"] == "ok"


def _running_again(instance: Instance, name: str, killed: int) -> dict[str, Any] | None:
    process = instance.processes()[name]
    return process if process["statename"] == "RUNNING" and process["pid"] != killed else None


def _given_up(instance: Instance, name: str) -> dict[str, Any] | None:
    health = instance.health()
    process = next(p for p in health["processes"] if p["name"] == name)
    return health if health["status"] == "failed" and process["state"] == "stopped" else None


def test_a_stop_is_graceful_bounded_and_leaves_no_process_behind(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        supervised = [psutil.Process(p["pid"]) for p in instance.supervisor.processes()]
        everything = [psutil.Process(instance.proc.pid), *supervised]
        everything += [child for process in supervised for child in process.children(recursive=True)]
        assert len(everything) >= 9  # launcher, supervisord's children, gunicorn's workers
        assert instance.stop(signal.SIGTERM) == 0
        run_dir = instance.run_dir
    assert [p.pid for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert not run_dir.exists()
    text = instance.log.read_text()
    assert "relay released leadership" in text and "stopping after the current batch" in text


def test_two_instances_on_one_machine_keep_their_own_state(fresh_env: Env) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="orderstream-two-"))
    with orderstream_run(fresh_env, data_dir=data_dir) as first:
        requests.post(f"{first.base}/orders", json=ORDER, headers=first.auth, timeout=10)
        # the order and the reservation its process manager records
        published = "orderstream_events_published_total 2.0"
        wait_for(lambda: published in first.metrics(), what="the first's relay")
        with orderstream_run(fresh_env, data_dir=data_dir) as second:
            assert first.run_dir != second.run_dir and first.run_dir.exists() and second.run_dir.exists()
            assert published in first.metrics()  # its metrics were not wiped
            assert second.health()["status"] == "ok" and first.health()["status"] == "ok"
        assert first.health()["status"] == "ok" and published in first.metrics()
        assert not second.run_dir.exists()


def test_an_exit_while_starting_is_counted_like_any_other(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        first = instance.processes()["projector.1"]["pid"]
        os.kill(first, signal.SIGKILL)
        starting = wait_for(lambda: (p := instance.processes()["projector.1"])["pid"] not in (0, first) and p,
                            what="its replacement")  # fmt: skip
        assert starting["statename"] == "STARTING"  # supervisord calls it running after 2 s
        os.kill(starting["pid"], signal.SIGKILL)
        wait_for(lambda: _running_again(instance, "projector.1", starting["pid"]), timeout=30, what="projector back")
        projector = next(p for p in instance.health()["processes"] if p["name"] == "projector.1")
        assert projector["restarts"] == 2 and projector["last_exit"]["how"].endswith("while starting")
        assert 'orderstream_process_restarts_total{process="projector.1"} 2.0' in instance.metrics()


def test_supervisord_killed_is_started_again_and_leaves_no_orphan(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        before = [p["pid"] for p in instance.supervisor.processes()]
        orphans = [psutil.Process(pid) for pid in before]
        os.kill(int((instance.run_dir / "supervisord.pid").read_text()), signal.SIGKILL)
        wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans),
                 timeout=60, what="the dead supervisord's processes to be stopped")  # fmt: skip
        wait_for(lambda: _all_running(instance, before), timeout=60, what="a new supervisord and its processes")
        placed = requests.post(f"{instance.base}/orders", json=ORDER, headers=instance.auth, timeout=10)
        assert placed.status_code == 201
        assert "supervisord died" in instance.log.read_text()


def _all_running(instance: Instance, old: list[int]) -> bool:
    try:
        processes = instance.supervisor.processes()
    except OSError:
        return False
    return all(p["statename"] == "RUNNING" and p["pid"] not in old for p in processes)


def test_a_second_instance_on_a_taken_port_refuses_to_start(fresh_env: Env) -> None:
    with orderstream_run(fresh_env) as instance:
        port = instance.base.rsplit(":", 1)[1]
        second = subprocess.run(
            [str(BIN / "orderstream"), "run"], env=fresh_env.process_env(PORT=port), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert second.returncode != 0 and f"127.0.0.1:{port} is taken" in second.stderr
        assert instance.health()["status"] == "ok"
