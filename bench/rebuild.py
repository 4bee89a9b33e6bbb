"""Rebuild benchmark: replaying a log of a million events into a projection, against a bare baseline.

Generates the log with SQL (orders of six events: created, two items added, paid, shipped,
delivered), then in the same run measures
- the bare baseline: read the same events in batches by position and upsert one row per event,
  nothing else (psycopg executemany, one transaction per batch);
- orderstream's rebuild of order_summaries: shadow tables, apply_batch per batch (checkpoints, then
  the projection's apply: the batch folded in memory onto the rows it touches, written back with
  one statement per table), catch-up and swap.
It prints the rates, their ratio, and how each rate holds over the log (per tenth of the events), and
writes them to bench/results/rebuild.json.

    make bench-rebuild BENCH_ARGS="--events 1000000"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from itertools import pairwise
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from app.platform import schema  # noqa: E402
from app.platform.config import Settings  # noqa: E402
from app.platform.db import make_engine  # noqa: E402
from queries.order_summaries import ORDER_SUMMARIES  # noqa: E402
from workers.rebuild import rebuild  # noqa: E402
from workers.replay import Progress  # noqa: E402

GENERATE = """
INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)
SELECT gen_random_uuid(), o.id::text, v.version, v.type, v.sv, v.payload, '{"actor": "bench"}'
FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(%(first)s::int, %(last)s::int) g) o
CROSS JOIN LATERAL (VALUES
  (1, 'OrderCreated', 1, jsonb_build_object('order_id', o.id, 'customer_id', 'c-' || (o.g %% 1000),
      'currency', 'EUR', 'lines', jsonb_build_array(jsonb_build_object('sku', 'A', 'quantity', 2,
      'unit_price', '9.99')))),
  (2, 'ItemAdded', 1, jsonb_build_object('order_id', o.id, 'sku', 'B', 'quantity', 1, 'unit_price', '0.02')),
  (3, 'ItemAdded', 1, jsonb_build_object('order_id', o.id, 'sku', 'A', 'quantity', 1, 'unit_price', '9.99')),
  (4, 'PaymentProcessed', 1, jsonb_build_object('order_id', o.id, 'amount', '29.99', 'reference', 'r')),
  (5, 'ProductShipped', 2, jsonb_build_object('order_id', o.id, 'carrier', 'DHL', 'tracking_number', 'T',
      'service_level', 'standard')),
  (6, 'OrderDelivered', 1, jsonb_build_object('order_id', o.id))
) AS v(version, type, sv, payload)
ORDER BY o.g, v.version
"""


def generate(url: str, events: int) -> None:
    orders = events // 6
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_to_outbox")  # nothing to publish here
        for first in range(1, orders + 1, 20_000):
            conn.execute(GENERATE, {"first": first, "last": min(first + 19_999, orders)})  # type: ignore[arg-type]
            print(f"\rgenerating the log: {min(first + 19_999, orders) * 6:,} events", end="", flush=True)
        conn.execute("ALTER TABLE events ENABLE TRIGGER events_to_outbox")
        conn.execute("VACUUM ANALYZE events")
    print()


def bare(url: str, batch: int = 5000) -> list[tuple[int, float]]:
    """Read events in batches by position; upsert one row per event. Returns (done, seconds) marks."""
    marks, done, after, start = [], 0, 0, time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bare_rebuild (stream_id text PRIMARY KEY, version int, type text)")
        conn.commit()
        while True:
            rows = conn.execute(
                "SELECT position, stream_id, version, type FROM events WHERE position > %s ORDER BY position LIMIT %s",
                (after, batch),
            ).fetchall()
            if not rows:
                break
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bare_rebuild (stream_id, version, type) VALUES (%s, %s, %s) ON CONFLICT (stream_id)"
                    " DO UPDATE SET version = EXCLUDED.version, type = EXCLUDED.type",
                    [(r[1], r[2], r[3]) for r in rows],
                )
            conn.commit()
            done, after = done + len(rows), rows[-1][0]
            marks.append((done, time.monotonic() - start))
    return marks


def ours(url: str) -> list[tuple[int, float]]:
    marks: list[tuple[int, float]] = []
    start = time.monotonic()
    engine = make_engine(Settings(database_url=url, redis_url="redis://unused"), pool_size=2)

    def mark(_step: str, progress: Progress) -> None:
        marks.append((progress.done, time.monotonic() - start))

    rebuild(engine, ORDER_SUMMARIES, on_progress=mark)
    engine.dispose()
    return marks


def tenths(marks: list[tuple[int, float]], total: int) -> list[float]:
    """Events per second within each tenth of the log (times interpolated between batch marks)."""
    points = [(0, 0.0), *marks]

    def time_at(done: float) -> float:
        for (d0, t0), (d1, t1) in pairwise(points):
            if d1 >= done:
                return t0 + (t1 - t0) * (done - d0) / max(d1 - d0, 1)
        return points[-1][1]

    bounds = [total * tenth / 10 for tenth in range(11)]
    return [(b - a) / max(time_at(b) - time_at(a), 1e-9) for a, b in pairwise(bounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    base = os.environ["DATABASE_URL"]
    name = f"os_bench_rebuild_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        schema.upgrade(url)
        generate(url, args.events)
        total = args.events // 6 * 6
        bare_marks = bare(url)
        our_marks = ours(url)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    bare_rate, our_rate = total / bare_marks[-1][1], total / our_marks[-1][1]
    report = {
        "events": total,
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "bare_events_per_s": bare_rate,
        "rebuild_events_per_s": our_rate,
        "ratio": our_rate / bare_rate,
        "bare_by_tenth": tenths(bare_marks, total),
        "rebuild_by_tenth": tenths(our_marks, total),
    }
    print(f"\nrebuild of {total:,} events ({report['machine']})")
    print(f"  bare read + upsert      {bare_rate:>10,.0f} events/s")
    print(f"  orderstream rebuild     {our_rate:>10,.0f} events/s   ratio {report['ratio']:.2f}")
    print("  by tenth of the log (events/s):")
    print("    bare    " + " ".join(f"{r:>7,.0f}" for r in report["bare_by_tenth"]))
    print("    rebuild " + " ".join(f"{r:>7,.0f}" for r in report["rebuild_by_tenth"]))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "rebuild.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
