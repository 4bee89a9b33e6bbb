"""Rebuilding a projection beside live traffic: shadow tables, catch-up, atomic swap."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

from app.entry.factory import create_app
from tests.support import BIN, ORDER, Env, api_client, rebuilt, snapshot, wait_for, workers


def table_oid(env: Env) -> int:
    return int(env.scalar("SELECT 'order_summaries'::regclass::oid"))


class Traffic:
    """Writers placing and paying orders, and readers checking that what they saw never goes back."""

    def __init__(self, env: Env) -> None:
        self.app = create_app(env.settings)
        self.stop = threading.Event()
        self.known: dict[str, int] = {}  # order id -> highest version a reader saw
        self.failures: list[str] = []
        self.reads = 0
        self.threads = [threading.Thread(target=self.write) for _ in range(2)]
        self.threads += [threading.Thread(target=self.read) for _ in range(2)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def write(self) -> None:
        client = api_client(self.app)
        while not self.stop.is_set():
            order_id = client.post("/orders", json=ORDER).json["order_id"]
            client.post(f"/orders/{order_id}/payments", json={"amount": "19.98", "reference": "r"})

    def read(self) -> None:
        client = api_client(self.app)
        while not self.stop.is_set():
            listed = client.get("/orders?page_size=20")
            if listed.status_code != 200:
                self.failures.append(f"GET /orders answered {listed.status_code}")
            for order in listed.json:
                self.known.setdefault(order["order_id"], 0)
            for order_id, seen in list(self.known.items())[-20:]:
                response = client.get(f"/orders/{order_id}")
                self.reads += 1
                if response.status_code != 200:
                    self.failures.append(f"{order_id} vanished: {response.status_code}")
                elif response.json["version"] < seen or len(response.json["items"]) != 1:
                    self.failures.append(f"{order_id} went back or is partial: {response.json}")
                else:
                    self.known[order_id] = response.json["version"]


def test_rebuild_through_rq_under_live_traffic_swaps_in_what_live_would_have(fresh_env: Env) -> None:
    env = fresh_env
    client = api_client(create_app(env.settings))
    with workers(env, ("relay",), ("projector",)):
        for _ in range(30):
            client.post("/orders", json=ORDER)
        before = table_oid(env)
        with Traffic(env) as traffic:
            wait_for(lambda: traffic.reads > 20, what="readers to be reading")
            queued = client.post("/admin/projections/order_summaries/rebuild")
            assert queued.status_code == 202, queued.json
            assert client.post("/admin/projections/order_summaries/rebuild").status_code == 409
            with workers(env, ("rqworker",)):
                job = wait_for(
                    lambda: (j := client.get(queued.json["status_url"]).json)["status"] in ("finished", "failed") and j,
                    timeout=60,
                    what="the rebuild job",
                )
            assert job["status"] == "finished", job
            reads_during = traffic.reads
        assert not traffic.failures, traffic.failures[:5]
        assert reads_during > 50
        wait_for(
            lambda: (
                env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries")
                == env.scalar("SELECT count(*) FROM events")
            ),
            what="the live projector to settle on the new tables",
        )
    assert table_oid(env) != before  # the tables were swapped, not patched
    assert snapshot(env) == rebuilt(env)
    assert job["meta"]["step"] == "done" and job["meta"]["events_done"] >= job["meta"]["events_total"] > 30
    state = {p["name"]: p for p in client.get("/admin/projections").json}["order_summaries"]
    assert state["rebuild"]["status"] == "done" and state["rebuild"]["rate"] > 0
    assert state["lag_events"] == 0 and state["lag_seconds"] == 0.0


def test_rebuild_from_the_cli_shows_progress(fresh_env: Env) -> None:
    env = fresh_env
    client = api_client(create_app(env.settings))
    with workers(env, ("relay",), ("projector",)):
        for _ in range(20):
            client.post("/orders", json=ORDER)
        wait_for(lambda: env.scalar("SELECT count(*) FROM order_summaries") == 20, what="projecting")
        done = subprocess.run(
            [str(BIN / "orderstream"), "rebuild", "order_summaries"],
            env=env.process_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "order_summaries rebuilt from 20 events" in done.stdout
    assert "rebuilding order_summaries: 100%" in done.stderr and "20.0/20.0" in done.stderr  # the tqdm bar
    assert snapshot(env) == rebuilt(env)
    unknown = subprocess.run([str(BIN / "orderstream"), "rebuild", "nope"], env=env.process_env(), capture_output=True)
    assert unknown.returncode == 2
