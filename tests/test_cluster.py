"""Scale-out proof on one machine: the event streams and consumer groups on a three-node Redis Cluster.

The partition stream keys land on different nodes; the relay, two projectors and the API run
unchanged (only ORDERSTREAM_STREAMS_REDIS_URL and ORDERSTREAM_STREAMS_CLUSTER differ), and the
projection ends equal to a rebuild from the log.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from app.entry.factory import create_app
from app.eventlog.streams import encode_entry, stream_key_for, stream_keys
from app.platform.config import Settings
from app.processes.embedded import free_port
from tests.support import (
    NO_IDLE_CLAIM,
    ORDER,
    REDIS_SERVER,
    TAKEOVER_S,
    Env,
    api_client,
    group_consumers,
    isolated_env,
    pending_ids,
    read_as,
    rebuilt,
    snapshot,
    wait_for,
    workers,
    write_history,
)

REDIS_CLI = REDIS_SERVER.parent / "redis-cli"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    """Three redis-server nodes in cluster mode, slots spread over them, no replicas."""
    ports = [cluster_port() for _ in range(3)]
    nodes = []
    for port in ports:
        directory = tmp_path / f"node-{port}"
        directory.mkdir()
        nodes.append(
            subprocess.Popen(
                [str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--appendonly", "no",
                 "--save", ""],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
    try:
        for port in ports:
            wait_for(lambda p=port: _pings(p), timeout=20, what=f"cluster node {port}")
        subprocess.run(
            [str(REDIS_CLI), "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            wait_for(lambda p=port: redis.Redis(port=p).cluster("info")["cluster_state"] == "ok", what="cluster ok")
        yield ports
    finally:
        for node in nodes:
            node.kill()
            node.wait(10)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, as Redis Cluster needs."""
    while True:
        port = free_port()
        if port <= 55_000 and _free(port + 10_000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def cluster_env(base_settings: Settings, template_db: str, cluster: list[int]) -> Iterator[Env]:
    with isolated_env(base_settings, template_db) as env:
        settings = replace(env.settings, streams_redis_url=f"redis://127.0.0.1:{cluster[0]}", streams_cluster=True)
        yield replace(env, settings=settings)


def test_streams_and_groups_run_unchanged_on_redis_cluster(cluster_env: Env, cluster: list[int]) -> None:
    env = cluster_env
    client = api_client(create_app(env.settings))
    nodes = redis.RedisCluster(host="127.0.0.1", port=cluster[0])
    keys = stream_keys(env.settings.key_prefix, env.settings.stream_partitions)
    homes = {nodes.get_node_from_key(key).port for key in keys}
    assert len(homes) >= 2, f"the partition keys all hash to one node: {homes}"

    with workers(env, ("relay",), ("projector", "--name", "p1"), ("projector", "--name", "p2")):
        orders = []
        for n in range(30):
            order_id = client.post("/orders", json={**ORDER, "customer_id": f"cluster-{n % 5}"}).json["order_id"]
            client.post(f"/orders/{order_id}/payments", json={"amount": "19.98", "reference": "r"})
            orders.append(order_id)
        events = env.scalar("SELECT count(*) FROM events")
        wait_for(
            lambda: env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events,
            timeout=30,
            what="the projection to apply every event from the cluster",
        )
        read = client.get(f"/orders/{orders[-1]}?min_version=2")
        assert read.status_code == 200 and read.json["status"] == "paid"
        streams = client.get("/admin/streams").json
        assert {g["name"] for s in streams for g in s["groups"]} == {"order_summaries"}
    assert snapshot(env) == rebuilt(env)
    on_nodes = {nodes.get_node_from_key(key).port for key in keys if nodes.exists(key)}
    assert len(on_nodes) >= 2  # the streams really live on more than one node


def test_a_dead_consumers_entries_are_taken_over_on_redis_cluster(cluster_env: Env, cluster: list[int]) -> None:
    """Heartbeat keys, XCLAIM and the removal of the dead name work with the streams and the heartbeat
    keys on different nodes. (The test publishes the entries itself: the relay's pipelined script is
    not supported by redis-py's cluster pipeline.)"""
    env = cluster_env
    nodes = redis.RedisCluster(host="127.0.0.1", port=cluster[0])
    pair = (("projector", "--name", "victim"), ("projector", "--name", "survivor"))
    with workers(env, *pair, **NO_IDLE_CLAIM) as (victim, survivor):
        wait_for(lambda: group_consumers(env, nodes) == {"victim", "survivor"}, what="both projectors to join")
        survivor.proc.send_signal(signal.SIGSTOP)  # the new entries are left for the victim's name
        try:
            victim.kill()
            for event in [e for _ in range(10) for e in write_history(env, str(uuid.uuid4()), 3)]:
                key = stream_key_for(env.settings.key_prefix, env.settings.stream_partitions, event.stream_id)
                nodes.xadd(key, encode_entry(event))  # type: ignore[arg-type]
            read_as(env, "victim", count=20, client=nodes)
        finally:
            survivor.proc.send_signal(signal.SIGCONT)
        assert pending_ids(env, "victim", nodes)
        wait_for(lambda: not pending_ids(env, "victim", nodes), timeout=TAKEOVER_S, what="the survivor to take over")
        events = env.scalar("SELECT count(*) FROM events")
        wait_for(lambda: env.scalar("SELECT coalesce(sum(version), 0) FROM order_summaries") == events, what="all")
        wait_for(lambda: group_consumers(env, nodes) == {"survivor"}, timeout=5, what="the dead name to leave")
    assert snapshot(env) == rebuilt(env)
