"""`orderstream run` (what `make run` starts) with the embedded default: real servers, real HTTP.

Starts with DATABASE_URL/REDIS_URL unset in a fresh data directory, drives an order through the API,
stops with Ctrl-C, starts again on the same data and finds the order, then stops with SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from app.embedded import free_port
from tests.support import BIN, answers, wait_for
from tests.test_api import ORDER

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


def service_ports(data_dir: Path) -> tuple[int, int]:
    pg = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[3])
    return pg, int((data_dir / "redis" / "port").read_text())


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, data_dir: Path, log: Path) -> None:
    pg_port, redis_port = service_ports(data_dir)
    if sig is signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole foreground group
    else:
        proc.send_signal(sig)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    wait_for(lambda: closed(pg_port) and closed(redis_port), timeout=30, what="embedded servers to stop")
    leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftover == [], f"processes left running after stop: {leftover}"


def test_make_run_serves_the_whole_path_and_stops_cleanly(tmp_path: Path) -> None:
    # Not under pytest's own temporary directory: pytest makes that private (0700) to the user running
    # the tests, and the embedded PostgreSQL runs as pgserver's user, which must reach its data.
    data_dir = Path(tempfile.mkdtemp(prefix="orderstream-run-")) / "data"
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
        paid = requests.post(
            f"{base}/orders/{order_id}/payments", json={"amount": "19.98", "reference": "r"}, headers=auth, timeout=5
        )
        assert paid.status_code == 200

        def paid_in_query() -> bool:
            response = requests.get(f"{base}/orders/{order_id}", headers=auth, timeout=5)
            return response.status_code == 200 and response.json()["status"] == "paid"

        wait_for(paid_in_query, timeout=30, what="the order to show as paid")
        workers = wait_for(
            lambda: requests.get(f"{base}/rq/0/data/workers.json", auth=("admin", token), timeout=5).json()["workers"],
            timeout=30,
            what="the rq worker in rq-dashboard",
        )
        assert len(workers) == 1
        stop(proc, signal.SIGINT, data_dir, log)

        proc = start(data_dir, port, log)  # the next run reuses the data directory
        wait_for(lambda: up(base), timeout=120, interval=0.5, what="the API after a restart")
        assert f"Admin token   {token}" in log.read_text().split("Ctrl-C stops everything")[-2]  # the same token
        again = requests.get(f"{base}/orders/{order_id}", headers=auth, timeout=5)
        assert again.status_code == 200 and again.json()["status"] == "paid"
        stop(proc, signal.SIGTERM, data_dir, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
