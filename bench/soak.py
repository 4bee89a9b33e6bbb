"""Memory soak: steady POST + GET load on orderstream, the RSS of every one of its processes sampled.

orderstream runs as in bench/load.py (gunicorn with the same flags: 2 sync workers, no recycling)
plus its relay, its projector and an rq worker, on a fresh database and its own stream keys. After a
short measurement of the peak POST rate, paced clients send POST /orders and GET /orders/{id} at
--fraction of that peak in all (half of it each) for --warmup + --duration seconds. Every --interval
seconds the RSS of the gunicorn master, each gunicorn worker, the relay, the projector and the rq
worker is sampled (psutil). Per process: the mean RSS over the first minute after the warm-up against
the mean over the last minute, their ratio, pass if within --limit (10%).

gunicorn's max_requests recycling would replace workers and hide a leak; the bench flags turn it off
(`--max-requests 0`, over the production config's 20000). A worker replaced anyway (a crash, a
timeout) is reported, and its successor sampled in its place.

Writes bench/results/soak.json (bench/report.py puts it in docs/performance.md).

    make bench-soak SOAK_ARGS="--duration 600"
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    BIN,
    GUNICORN,
    POST_OURS,
    RESULTS,
    Load,
    _cleanup_streams,
    create_orders,
    database,
    drive,
    machine,
    ours_env,
    process,
    visible,
    wait_up,
)

from app.platform import schema
from app.processes.embedded import free_port

MIB = 1024 * 1024


class Sampler:
    """RSS of named processes; gunicorn's workers found (and re-found, if replaced) as the master's children."""

    def __init__(self, processes: dict[str, int], master: int, workers: int) -> None:
        self.pids = dict(processes)
        self.master = master
        self.slots = [f"gunicorn worker {i + 1}" for i in range(workers)]
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in [*processes, *self.slots]}
        self.replaced: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def _workers(self) -> None:
        children = sorted(child.pid for child in psutil.Process(self.master).children())
        known = {self.pids.get(slot) for slot in self.slots}
        new = [pid for pid in children if pid not in known]
        for slot in self.slots:
            pid = self.pids.get(slot)
            if pid in children:
                continue
            if pid is not None:
                self.replaced.append({"slot": slot, "old_pid": pid, "at_s": round(time.monotonic() - self.started)})
            if new:
                self.pids[slot] = new.pop(0)

    def sample(self) -> None:
        self._workers()
        at = time.monotonic() - self.started
        for name, pid in self.pids.items():
            with suppress(psutil.NoSuchProcess):
                self.samples[name].append((at, psutil.Process(pid).memory_info().rss / MIB))


def summarise(sampler: Sampler, warmup: float, end: float, window: float, limit: float) -> list[dict[str, Any]]:
    out = []
    for name, series in sampler.samples.items():
        first = [rss for at, rss in series if warmup <= at < warmup + window]
        last = [rss for at, rss in series if end - window <= at <= end]
        if not first or not last:
            continue
        ratio = statistics.mean(last) / statistics.mean(first)
        out.append(
            {
                "name": name,
                "pid": sampler.pids[name],
                "first_mib": statistics.mean(first),
                "last_mib": statistics.mean(last),
                "max_mib": max(rss for _, rss in series),
                "ratio": ratio,
                "pass": abs(ratio - 1) <= limit,
                "samples": [[round(at, 1), round(rss, 2)] for at, rss in series],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of steady load after the warm-up")
    parser.add_argument("--warmup", type=float, default=60, help="seconds of the same load before")
    parser.add_argument("--interval", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the peak POST rate, POST and GET together")
    parser.add_argument("--rate", type=float, default=0, help="total requests/s instead of measuring the peak")
    parser.add_argument("--clients", type=int, default=8, help="paced clients for POST, and as many for GET")
    parser.add_argument("--limit", type=float, default=0.10, help="largest allowed RSS change, last vs first")
    args = parser.parse_args()
    base_db, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    prefix = f"osbench:{uuid.uuid4().hex[:8]}"
    print(f"databases os_bench_*, Redis keys {prefix}:* (removed at the end)", flush=True)
    port = free_port()
    window = min(60.0, args.duration / 3)

    with ExitStack() as stack:
        stack.enter_context(_cleanup_streams(redis_url, prefix))
        db = stack.enter_context(database(base_db))
        schema.upgrade(db)
        env = ours_env(db, redis_url, prefix)
        web = stack.enter_context(
            process([str(BIN / "gunicorn"), *GUNICORN, "-b", f"127.0.0.1:{port}", "wsgi:app"], env, "soak-web")
        )
        relay = stack.enter_context(process([str(BIN / "orderstream"), "relay"], env, "soak-relay"))
        projector = stack.enter_context(process([str(BIN / "orderstream"), "projector"], env, "soak-projector"))
        rq_argv = [str(BIN / "rq"), "worker", "-c", "workers.preload", "--url", redis_url, "--name", f"{prefix}-rq",
                   env["ORDERSTREAM_RQ_QUEUE"]]  # fmt: skip
        rq = stack.enter_context(process(rq_argv, env, "soak-rq"))
        upkeep = stack.enter_context(process([str(BIN / "orderstream"), "upkeep"], env, "soak-upkeep"))
        wait_up(port)
        info = machine(base_db, redis_url)

        ids = create_orders(port, 400, guarantees=True)
        visible(port, ids)
        if args.rate:
            total = args.rate
        else:
            peak = drive(port, POST_OURS, 16, 5)["rps"]
            total = peak * args.fraction
            print(f"peak POST rate {peak:.0f}/s; steady load {total:.0f} requests/s, half POST, half GET", flush=True)
        sampler = Sampler(
            {
                "gunicorn master": web.pid,
                "relay": relay.pid,
                "projector": projector.pid,
                "rq worker": rq.pid,
                "upkeep": upkeep.pid,
            },
            web.pid,
            workers=2,
        )
        seconds = args.warmup + args.duration
        stop = multiprocessing.Event()
        results: dict[str, dict[str, Any]] = {}

        def run(name: str, load: Load) -> None:
            results[name] = drive(port, load, args.clients, seconds + 5, rate=total / 2, stop=stop)

        threads = [
            threading.Thread(target=run, args=("post", POST_OURS)),
            threading.Thread(target=run, args=("get", Load("GET", ids=tuple(ids)))),
        ]
        for t in threads:
            t.start()
        sampler.started = time.monotonic()
        print(f"soak: {args.warmup:.0f} s warm-up + {args.duration:.0f} s, RSS every {args.interval:.0f} s", flush=True)
        try:
            while (elapsed := time.monotonic() - sampler.started) <= seconds:
                sampler.sample()
                if int(elapsed) % 60 < args.interval:
                    line = ", ".join(f"{n} {s[-1][1]:.0f}" for n, s in sampler.samples.items() if s)
                    print(f"  {elapsed:>5.0f} s  RSS MiB: {line}", flush=True)
                time.sleep(max(0.0, args.interval - (time.monotonic() - sampler.started - elapsed)))
        finally:
            stop.set()
            for t in threads:
                t.join()
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            db_mib = row[0] / MIB if row else 0.0

    processes = summarise(sampler, args.warmup, seconds, window, args.limit)
    report = {
        "machine": info,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "interval_s": args.interval,
        "window_s": window,
        "limit": args.limit,
        "target_rps": total,
        "post_rps": results["post"]["rps"],
        "get_rps": results["get"]["rps"],
        "post_p99_ms": results["post"]["p99_ms"],
        "get_p99_ms": results["get"]["p99_ms"],
        "errors": results["post"]["errors"] + results["get"]["errors"],
        "database_mib_at_end": db_mib,
        "gunicorn": " ".join(GUNICORN),
        "workers_replaced": len(sampler.replaced),
        "replacements": sampler.replaced,
        "processes": processes,
        "pass": all(p["pass"] for p in processes),
    }
    print(
        f"\n{report['post_rps']:.0f} POST/s + {report['get_rps']:.0f} GET/s for {args.duration:.0f} s "
        f"({report['errors']} errors); RSS, mean of the first {window:.0f} s after warm-up vs the last {window:.0f} s:"
    )
    for p in processes:
        verdict = "pass" if p["pass"] else "FAIL"
        print(f"  {p['name']:20}{p['first_mib']:>8.1f} MiB{p['last_mib']:>8.1f} MiB{p['ratio']:>8.3f}  {verdict}")
    print(f"workers replaced: {len(sampler.replaced)}; overall: {'pass' if report['pass'] else 'FAIL'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
