"""Projection throughput: one orderstream projector against a bare stream consumer, same events, one run.

Generates orders of six events (created, two items added, paid, shipped, delivered) into the event
store with SQL, publishes them to the partition streams with the real relay (`Relay.publish_batch`,
outbox rows and envelopes as in production), then drains the same entries twice, each through its own
consumer group:
- the bare consumer: XREADGROUP over the partition streams in batches of 500, upsert one row per
  event (psycopg executemany, one transaction per batch), XACK; nothing else;
- orderstream's projector: the `orderstream projector` runner (ConsumerGroupRunner of
  order_summaries, in this process), stepping until it has acknowledged every entry: decoding,
  checkpoints, the projection's batch apply, one transaction per batch, XACK.
It prints both rates and their ratio and writes bench/results/projector.json.

    make bench-projector BENCH_ARGS="--events 200000"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from app.eventlog.streams import stream_keys  # noqa: E402
from app.platform import schema  # noqa: E402
from app.platform.config import Settings  # noqa: E402
from app.platform.db import make_engine  # noqa: E402
from queries.order_summaries import ORDER_SUMMARIES  # noqa: E402
from workers.consumer import ConsumerGroupRunner  # noqa: E402
from workers.relay import Relay  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from rebuild import GENERATE  # noqa: E402

BATCH = 500


def generate(url: str, events: int) -> None:
    """The log, with the outbox trigger on: every event is queued for the relay as in production."""
    orders = events // 6
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, orders + 1, 20_000):
            conn.execute(GENERATE, {"first": first, "last": min(first + 19_999, orders)})  # type: ignore[arg-type]
            print(f"\rgenerating the log: {min(first + 19_999, orders) * 6:,} events", end="", flush=True)
        conn.execute("VACUUM ANALYZE events")
    print()


def publish(settings: Settings, redis: Redis) -> int:
    """Drain the outbox to the streams with the relay's own publishing code."""
    engine = make_engine(settings, pool_size=1)
    relay = Relay(settings, engine, redis, threading.Event())
    published = 0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while count := relay.publish_batch(conn):
            published += count
            print(f"\rpublishing: {published:,} events", end="", flush=True)
    print()
    engine.dispose()
    return published


def bare(url: str, redis: Redis, keys: list[str], total: int) -> float:
    """XREADGROUP a batch, upsert one row per event in one transaction, XACK; returns seconds."""
    for key in keys:
        redis.xgroup_create(key, "bare", id="0")
    done, start = 0, time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bare_projection (stream_id text PRIMARY KEY, version int, type text)")
        conn.commit()
        while done < total:
            response: Any = redis.xreadgroup("bare", "bare-1", dict.fromkeys(keys, ">"), count=BATCH, block=1000)
            rows = [
                (f[b"stream_id"].decode(), int(f[b"version"]), f[b"type"].decode())
                for _key, entries in response
                for _id, f in entries
            ]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bare_projection (stream_id, version, type) VALUES (%s, %s, %s)"
                    " ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, type = EXCLUDED.type",
                    rows,
                )
            conn.commit()
            pipe = redis.pipeline(transaction=False)
            for key, entries in response:
                pipe.xack(key, "bare", *[entry_id for entry_id, _fields in entries])
            pipe.execute()
            done += len(rows)
    return time.monotonic() - start


def ours(settings: Settings, redis: Redis, total: int) -> float:
    """The projector's runner, stepping until every entry is acknowledged; returns seconds."""
    engine = make_engine(settings, pool_size=1)
    with engine.begin() as conn:  # an existing projection: its source is the streams, not a catch-up
        conn.exec_driver_sql("INSERT INTO projection_catchups (projection) VALUES ('order_summaries')")
    runner = ConsumerGroupRunner(settings, ORDER_SUMMARIES, engine, redis, "bench-1", threading.Event())
    runner.ensure_groups()
    done, start = 0, time.monotonic()
    while done < total:
        done += runner.step()
    elapsed = time.monotonic() - start
    with engine.connect() as conn:
        applied = conn.exec_driver_sql("SELECT sum(version) FROM order_summaries").scalar()
    engine.dispose()
    if applied != total:
        raise SystemExit(f"the projection holds {applied} events, expected {total}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    base, name = os.environ["DATABASE_URL"], f"os_bench_projector_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = base.rsplit("/", 1)[0] + "/" + name
    settings = Settings(database_url=url, redis_url=os.environ["REDIS_URL"], key_prefix=name, relay_batch_size=5000)
    redis = Redis.from_url(settings.redis_url)
    keys = stream_keys(settings.key_prefix, settings.stream_partitions)
    try:
        schema.upgrade(url)
        generate(url, args.events)
        total = publish(settings, redis)
        bare_seconds = bare(url, redis, keys, total)
        our_seconds = ours(settings, redis, total)
    finally:
        redis.delete(*keys)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    bare_rate, our_rate = total / bare_seconds, total / our_seconds
    report = {
        "events": total,
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "batch": BATCH,
        "projector": "ConsumerGroupRunner(order_summaries) in process, as `orderstream projector` runs it",
        "bare_events_per_s": bare_rate,
        "projector_events_per_s": our_rate,
        "ratio": our_rate / bare_rate,
        "goal": 0.6,  # the performance issue: at least 0.6x the bare consumer per projector process
    }
    print(f"\nprojection of {total:,} pre-published events ({report['machine']})")
    print(f"  bare XREADGROUP + upsert + XACK  {bare_rate:>10,.0f} events/s")
    print(f"  orderstream projector            {our_rate:>10,.0f} events/s   ratio {report['ratio']:.2f}")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "projector.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
