"""Snapshot benchmark: reserving stock on a SKU whose stream holds 100,000 events costs what it costs
on a new SKU, because a SKU is loaded from its newest snapshot and the events after it.

In one run, on a fresh database: a SKU's stream of --events events is generated with SQL (a receipt,
then reservations and releases of one unit, as orders come and go), and its snapshot at the last
multiple of ORDERSTREAM_SNAPSHOT_EVERY is taken as the handlers would have taken it. Then
--reservations reservations (commands/stock.py reserve_lines, one transaction each, the handlers'
snapshots every 100 events) alternate between the long SKU and a new one; it prints the median and
95th percentile of each, their ratio, and, for contrast, one load of the long SKU with no snapshot
(a full fold). Results go to bench/results/snapshots.json.

    make bench-snapshots BENCH_ARGS="--events 100000"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
from sqlalchemy import Engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from app.eventlog import snapshots  # noqa: E402
from app.eventlog.events import Line, inventory_stream  # noqa: E402
from app.platform import schema  # noqa: E402
from app.platform.config import Settings  # noqa: E402
from app.platform.db import make_engine  # noqa: E402
from commands import stock  # noqa: E402
from commands.inventory import SNAPSHOT_SCHEMA  # noqa: E402

EVERY = 100
META = {"actor": "bench"}
GENERATE = """
INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)
SELECT gen_random_uuid(), %(stream)s, v,
       CASE WHEN v = 1 THEN 'StockReceived' WHEN v %% 2 = 0 THEN 'UnitsReserved' ELSE 'UnitsReleased' END, 1,
       CASE WHEN v = 1 THEN jsonb_build_object('sku', %(sku)s::text, 'quantity', 1000000000, 'reference', 'r')
            ELSE jsonb_build_object('sku', %(sku)s::text, 'order_id', 'o-' || (v - v %% 2), 'quantity', 1) END,
       '{"actor": "bench"}'
FROM generate_series(%(first)s::int, %(last)s::int) v
"""


def generate(url: str, sku: str, events: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, events + 1, 50_000):
            last = min(first + 49_999, events)
            conn.execute(GENERATE, {"stream": inventory_stream(sku), "sku": sku, "first": first, "last": last})
        conn.execute("DELETE FROM outbox")  # no relay runs here; keep the trigger's queue out of the way


def timed_reservation(engine: Engine, sku: str) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        stock.reserve_lines(conn, f"order-{uuid.uuid4()}", [Line(sku, 1, Decimal(1))], META, EVERY)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reservations", type=int, default=500)
    args = parser.parse_args()
    base = os.environ["DATABASE_URL"]
    name = f"os_bench_snapshots_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = base.rsplit("/", 1)[0] + "/" + name
    engine = None
    try:
        schema.upgrade(url)
        long_sku, new_sku = "LONG-1", "NEW-1"
        generate(url, long_sku, args.events)
        engine = make_engine(Settings(database_url=url, redis_url="redis://unused"), pool_size=2)
        with engine.begin() as conn:
            started = time.perf_counter()
            full = stock.load_sku(conn, long_sku)  # no snapshot yet: the whole stream
            full_fold_s = time.perf_counter() - started
            # The snapshot the handlers would have taken had they appended these events (at version
            # --events, a multiple of EVERY by default).
            snapshots.save(conn, inventory_stream(long_sku), full.version, SNAPSHOT_SCHEMA, full.snapshot())
            stock.handle(conn, stock.ReceiveStock(new_sku, 1_000_000_000, "r"), META, snapshot_every=EVERY)
        for _ in range(20):  # warm up: prepared statements, the pool
            timed_reservation(engine, long_sku), timed_reservation(engine, new_sku)
        long_s, new_s = [], []
        for _ in range(args.reservations):
            long_s.append(timed_reservation(engine, long_sku))
            new_s.append(timed_reservation(engine, new_sku))
    finally:
        if engine is not None:
            engine.dispose()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    def ms(values: list[float], q: float) -> float:
        return 1000 * statistics.quantiles(values, n=100)[int(q) - 1] if q < 100 else 1000 * max(values)

    report = {
        "events_on_long_sku": args.events,
        "reservations_each": args.reservations,
        "snapshot_every": EVERY,
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "long_sku_median_ms": 1000 * statistics.median(long_s),
        "new_sku_median_ms": 1000 * statistics.median(new_s),
        "long_sku_p95_ms": ms(long_s, 95),
        "new_sku_p95_ms": ms(new_s, 95),
        "ratio_of_medians": statistics.median(long_s) / statistics.median(new_s),
        "full_fold_without_snapshot_ms": 1000 * full_fold_s,
    }
    print(f"\nreservations on a SKU of {args.events:,} events vs a new SKU ({report['machine']})")
    print(f"  long SKU: median {report['long_sku_median_ms']:.2f} ms, p95 {report['long_sku_p95_ms']:.2f} ms")
    print(f"  new SKU:  median {report['new_sku_median_ms']:.2f} ms, p95 {report['new_sku_p95_ms']:.2f} ms")
    print(f"  ratio of medians (long / new): {report['ratio_of_medians']:.2f}")
    print(
        f"  one load of the long SKU without a snapshot (full fold): {report['full_fold_without_snapshot_ms']:.0f} ms"
    )
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "snapshots.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
