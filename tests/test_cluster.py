"""Scale-out proof on one machine: the event streams and consumer groups on a three-node Redis Cluster.

The partition stream keys land on different nodes; the relay, two projectors and the API run
unchanged (only ORDERSTREAM_STREAMS_REDIS_URL and ORDERSTREAM_STREAMS_CLUSTER differ), and the
projection ends equal to a rebuild from the log.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.embedded import free_port
from app.factory import create_app
from app.streams import stream_keys
from tests.faults import REDIS_SERVER
from tests.projections import rebuilt, snapshot
from tests.support import Env, api_client, isolated_env, wait_for, workers
from tests.test_api import ORDER

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
