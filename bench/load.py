"""Load benchmark: POST /orders on orderstream against the bare INSERT+XADD app, in one run.

Both apps run under gunicorn with the same settings, on their own fresh database and stream keys.
Phases alternate (bare, ours, bare, ours) so drift on a noisy machine hits both alike. Reports
requests/s and latency percentiles per app with ratios, and the freshness of the query side: the
time from a command's response until GET /orders/{id} shows the order (median, p99).

    make bench BENCH_ARGS="--duration 20 --concurrency 16"
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "src"))

from app import schema  # noqa: E402
from app.embedded import free_port  # noqa: E402

BODY = json.dumps(
    {"customer_id": "bench", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 2, "unit_price": "9.99"}]}
).encode()
TOKEN = f"bench-{uuid.uuid4().hex}"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
GUNICORN = ["--workers", "2", "--no-control-socket", "--log-level", "warning"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@contextmanager
def database(base_url: str) -> Iterator[str]:
    name = f"os_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@contextmanager
def process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def _client(port: int, until: float, out: Any) -> None:
    latencies, errors = [], 0
    while time.monotonic() < until:
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/orders", BODY, HEADERS)
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status == 201:
            latencies.append(time.perf_counter() - start)
        else:
            errors += 1
    out.put((latencies, errors))


def _client_process(port: int, threads: int, until: float, out: Any) -> None:
    workers = [threading.Thread(target=_client, args=(port, until, out)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def drive(port: int, concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` clients in 2 processes, each POSTing as fast as it is answered, for `seconds`."""
    out: Any = multiprocessing.Queue()
    until = time.monotonic() + seconds
    procs = [
        multiprocessing.Process(target=_client_process, args=(port, n, until, out))
        for n in (concurrency // 2, concurrency - concurrency // 2)
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in range(concurrency):
        got, failed = out.get()
        latencies += got
        errors += failed
    for p in procs:
        p.join()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def freshness(port: int, samples: int) -> dict[str, float]:
    """POST an order, then poll GET /orders/{id} until it is there; time from response to visible."""
    delays = []
    for _ in range(samples):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/orders", BODY, HEADERS)
        order_id = json.loads(conn.getresponse().read())["order_id"]
        answered = time.perf_counter()
        while True:
            conn.request("GET", f"/orders/{order_id}", headers=HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                delays.append(time.perf_counter() - answered)
                break
        conn.close()
    return {"median_ms": statistics.median(delays) * 1000, "p99_ms": percentile(delays, 99) * 1000}


def merge(runs: list[dict[str, float]], seconds: float) -> dict[str, float]:
    return {
        "rps": sum(r["requests"] for r in runs) / (seconds * len(runs)),
        "p50_ms": statistics.mean(r["p50_ms"] for r in runs),
        "p99_ms": statistics.mean(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per app (split in 2 phases)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--freshness-samples", type=int, default=300)
    args = parser.parse_args()
    base_db, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    prefix = f"osbench:{uuid.uuid4().hex[:8]}"
    ours_port, bare_port = free_port(), free_port()

    with ExitStack() as stack:
        ours_db, bare_db = stack.enter_context(database(base_db)), stack.enter_context(database(base_db))
        schema.upgrade(ours_db)
        with psycopg.connect(bare_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare_orders (id uuid PRIMARY KEY, body jsonb NOT NULL)")
        ours_env = {
            "DATABASE_URL": ours_db,
            "REDIS_URL": redis_url,
            "ORDERSTREAM_KEY_PREFIX": prefix,
            "ORDERSTREAM_ADMIN_TOKEN": TOKEN,
            "ORDERSTREAM_RATE_LIMIT": "1000000 per second",  # measure the service, not the limiter's refusals
        }
        bare_env = {"BARE_DATABASE_URL": bare_db, "REDIS_URL": redis_url, "BARE_STREAM": f"{prefix}:bare"}
        gunicorn = str(BIN / "gunicorn")
        stack.enter_context(process([gunicorn, *GUNICORN, "-b", f"127.0.0.1:{ours_port}", "wsgi:app"], ours_env))
        stack.enter_context(process([str(BIN / "orderstream"), "relay"], ours_env))
        stack.enter_context(process([str(BIN / "orderstream"), "projector"], ours_env))
        stack.enter_context(
            process([gunicorn, *GUNICORN, "-b", f"127.0.0.1:{bare_port}", "--chdir", "bench", "bare_app:app"], bare_env)
        )
        wait_up(ours_port)
        wait_up(bare_port)
        drive(bare_port, args.concurrency, 2)  # warm-up
        drive(ours_port, args.concurrency, 2)
        half = args.duration / 2
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "ours": []}
        for _ in range(2):
            runs["bare"].append(drive(bare_port, args.concurrency, half))
            runs["ours"].append(drive(ours_port, args.concurrency, half))
        fresh = freshness(ours_port, args.freshness_samples)
        stack.enter_context(_cleanup_streams(redis_url, prefix))

    bare, ours = merge(runs["bare"], half), merge(runs["ours"], half)
    report = {
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "concurrency": args.concurrency,
        "seconds_per_app": args.duration,
        "bare": bare,
        "orderstream": ours,
        "ratios": {
            "rps": ours["rps"] / bare["rps"],
            "p99": ours["p99_ms"] / bare["p99_ms"],
        },
        "freshness": fresh,
    }
    print_report(report)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=2))


@contextmanager
def _cleanup_streams(redis_url: str, prefix: str) -> Iterator[None]:
    from redis import Redis

    yield
    redis = Redis.from_url(redis_url)
    keys = list(redis.scan_iter(f"{prefix}:*"))
    if keys:
        redis.delete(*keys)


def print_report(r: dict[str, Any]) -> None:
    b, o = r["bare"], r["orderstream"]
    print(
        f"\nPOST /orders, {r['concurrency']} concurrent clients, {r['seconds_per_app']:.0f}s per app ({r['machine']})"
    )
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, x in (("bare INSERT+XADD", b), ("orderstream", o)):
        print(f"{name:24}{x['rps']:>10.0f}{x['p50_ms']:>10.2f}{x['p99_ms']:>10.2f}{x['errors']:>8}")
    print(f"{'ratio (ours / bare)':24}{r['ratios']['rps']:>10.2f}{'':>10}{r['ratios']['p99']:>10.2f}")
    f = r["freshness"]
    median, p99 = f["median_ms"], f["p99_ms"]
    print(f"\nfreshness, response to visible at GET /orders/{{id}}: median {median:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
