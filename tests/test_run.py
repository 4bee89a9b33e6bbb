"""`orderstream run` (what `make run` starts) with the embedded default: real servers, real HTTP.

Starts with DATABASE_URL/REDIS_URL unset in a fresh data directory, drives an order through the API,
kills the embedded servers (their supervisord starts them again), stops with Ctrl-C, starts again on
the same data and finds the order, then stops with SIGTERM; nothing is left running. Two instances on
one data directory share its servers, which stop with the last of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import requests

from app.processes.embedded import free_port
from app.processes.supervision import Supervisor, socket_url
from tests.support import BIN, ORDER, answers, wait_for

pytestmark = pytest.mark.embedded


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(ORDERSTREAM_DATA_DIR=str(data_dir), PORT=str(port), ORDERSTREAM_KEY_PREFIX="orderstream")
    env.pop("ORDERSTREAM_ADMIN_TOKEN", None)  # make run creates and prints a development token
    return subprocess.Popen(
        [str(BIN / "orderstream"), "run"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def up(base: str) -> bool:
    return answers(f"{base}/openapi.json")


def closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def servers(data_dir: Path) -> Supervisor:
    """The supervisord of the data directory's embedded servers."""
    return Supervisor(socket_url(data_dir / "servers"))


def everything(proc: subprocess.Popen[bytes], data_dir: Path) -> list[psutil.Process]:
    """The launcher, every process under it, and the servers' supervisord with its processes."""
    found = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    with (data_dir / "servers" / "supervisord.pid").open() as pidfile:
        supervisord = psutil.Process(int(pidfile.read()))
    return [*found, supervisord, *supervisord.children(recursive=True)]


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, data_dir: Path, log: Path) -> None:
    processes = everything(proc, data_dir)
    ports = [p.laddr.port for s in servers(data_dir).processes() for p in psutil.Process(s["pid"]).net_connections()
             if p.status == psutil.CONN_LISTEN]  # fmt: skip
    if sig is signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole foreground group
    else:
        proc.send_signal(sig)
    assert proc.wait(90) == 0, log.read_text()[-3000:]
    wait_for(lambda: all(closed(port) for port in ports), timeout=30, what="embedded servers to stop")
    leftover = [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftover == [], f"processes left running after stop: {leftover}"


@contextmanager
def data_directory() -> Iterator[Path]:
    # Not under pytest's own temporary directory: pytest makes that private (0700) to the user running
    # the tests, and the embedded PostgreSQL runs as pgserver's user, which must reach its data.
    data_dir = Path(tempfile.mkdtemp(prefix="orderstream-run-")) / "data"
    try:
        yield data_dir
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_make_run_serves_the_whole_path_and_stops_cleanly(tmp_path: Path) -> None:
    with data_directory() as data_dir:
        log, port = tmp_path / "run.log", free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(data_dir, port, log)
        try:
            wait_for(lambda: up(base), timeout=120, interval=0.5, what=f"the API at {base}")
            assert f"{base}/docs" in log.read_text() and f"{base}/rq" in log.read_text()
            token = (data_dir / "dev-admin-token").read_text().strip()
            assert f"Admin token   {token}" in log.read_text()
            auth = {"Authorization": f"Bearer {token}"}
            assert requests.get(f"{base}/orders", timeout=5).status_code == 401
            assert "swagger-ui-bundle.js" in requests.get(f"{base}/docs", timeout=5).text

            order_id = requests.post(f"{base}/orders", json=ORDER, headers=auth, timeout=5).json()["order_id"]
            paid = requests.post(f"{base}/orders/{order_id}/payments", json={"amount": "19.98", "reference": "r"},
                                 headers=auth, timeout=5)  # fmt: skip
            assert paid.status_code == 200

            def paid_in_query() -> bool:
                response = requests.get(f"{base}/orders/{order_id}", headers=auth, timeout=5)
                return response.status_code == 200 and response.json()["status"] == "paid"

            wait_for(paid_in_query, timeout=30, what="the order to show as paid")
            workers = wait_for(
                lambda: (
                    len(
                        w := requests.get(f"{base}/rq/0/data/workers.json", auth=("admin", token), timeout=5).json()[
                            "workers"
                        ]
                    )
                    == 2
                    and w
                ),
                timeout=30,
                what="the rq workers in rq-dashboard",
            )
            # the rq worker (upkeep, rebuilds, redrives) and the webhook sender, each on its own queue
            assert sorted(w["queues"] for w in workers) == [["orderstream"], ["orderstream-webhooks"]], workers

            # The embedded servers are supervised too: killed, they run again, and the service recovers.
            killed = {p["name"]: p["pid"] for p in servers(data_dir).processes() if p["group"] == "servers"}
            assert set(killed) == {"postgres.1", "redis.1"}
            for pid in killed.values():
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: all(p["statename"] == "RUNNING" and p["pid"] not in killed.values()
                                 for p in servers(data_dir).processes() if p["group"] == "servers"),
                     timeout=30, what="the servers to run again")  # fmt: skip
            again = wait_for(lambda: (r := requests.post(f"{base}/orders", json=ORDER, headers=auth, timeout=5))
                             .status_code == 201 and r, timeout=30, what="commands after the restart")  # fmt: skip
            wait_for(lambda: requests.get(f"{base}/orders/{again.json()['order_id']}", headers=auth, timeout=5)
                     .status_code == 200, timeout=30, what="the projector after the servers' restart")  # fmt: skip
            health = requests.get(f"{base}/admin/health", headers=auth, timeout=5).json()
            # At least once: a PostgreSQL killed with -9 may refuse its first start while the old
            # backends still hold its shared memory (an exit while starting, restarted again).
            assert {p["name"]: p["restarts"] for p in health["processes"]}["postgres.1"] >= 1
            stop(proc, signal.SIGINT, data_dir, log)

            proc = start(data_dir, port, log)  # the next run reuses the data directory
            wait_for(lambda: up(base), timeout=120, interval=0.5, what="the API after a restart")
            assert f"Admin token   {token}" in log.read_text().split("Ctrl-C stops everything")[-2]  # the same token
            again = requests.get(f"{base}/orders/{order_id}", headers=auth, timeout=5)
            assert again.status_code == 200 and again.json()["status"] == "paid"
            stop(proc, signal.SIGTERM, data_dir, log)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(90)


def test_two_instances_on_one_data_directory_share_its_servers_until_the_last_stops(tmp_path: Path) -> None:
    with data_directory() as data_dir:
        ports = [free_port(), free_port()]
        launchers = [start(data_dir, port, tmp_path / f"run-{port}.log") for port in ports]  # at once
        try:
            for port in ports:
                wait_for(lambda port=port: up(f"http://127.0.0.1:{port}"), timeout=120, interval=0.5,
                         what=f"the instance on {port}")  # fmt: skip
            running = [p for p in servers(data_dir).processes() if p["group"] == "servers"]
            assert sorted(p["name"] for p in running) == ["postgres.1", "redis.1"]  # one of each, shared
            token = (data_dir / "dev-admin-token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            second = f"http://127.0.0.1:{ports[1]}"
            launchers[0].send_signal(signal.SIGTERM)
            assert launchers[0].wait(90) == 0
            placed = requests.post(f"{second}/orders", json=ORDER, headers=auth, timeout=10)
            assert placed.status_code == 201  # the second still has its servers
            assert closed(ports[0]) and not closed(ports[1])
            stop(launchers[1], signal.SIGTERM, data_dir, tmp_path / f"run-{ports[1]}.log")  # the servers with it
        finally:
            for launcher in launchers:
                if launcher.poll() is None:
                    launcher.send_signal(signal.SIGTERM)
                    launcher.wait(90)


def test_a_stop_during_start_up_is_prompt_and_leaves_nothing(tmp_path: Path) -> None:
    with data_directory() as data_dir:
        log = tmp_path / "run.log"
        proc = start(data_dir, free_port(), log)
        wait_for(lambda: (data_dir / "servers" / "supervisor.sock").exists(), timeout=60, what="the servers starting")
        proc.send_signal(signal.SIGTERM)  # before the service's processes have started
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        wait_for(lambda: not _servers_running(data_dir), timeout=60, what="the servers to stop")
        assert "Traceback" not in log.read_text()


def _servers_running(data_dir: Path) -> bool:
    try:
        return psutil.Process(int((data_dir / "servers" / "supervisord.pid").read_text())).is_running()
    except (OSError, ValueError, psutil.Error):
        return False
