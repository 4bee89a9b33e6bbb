"""Load benchmark: orderstream against the bare app and the eventsourcing peer, in one run.

Every app runs under gunicorn with the same settings (2 sync workers), on its own fresh database and
stream keys; orderstream also runs its relay and projector, as in production. Phases alternate
(bare, peer, ours, ours without projector; then again) so drift on a noisy machine hits all alike,
and every figure is reported as a ratio within the run. Measured:

- POST /orders from --concurrency clients: bare INSERT+XADD app, Flask+eventsourcing peer,
  orderstream with every guarantee on (bearer token, a unique Idempotency-Key and X-Request-ID per
  request), and orderstream with its projector process stopped (SIGSTOP: web + relay only).
- GET /orders/{id} over ids created beforehand (ours: orders already visible in the projection):
  bare (one SELECT by primary key) against orderstream, same token.
- A concurrency sweep (--sweep) of POST for bare and ours: throughput and p99 against clients.
- Freshness: while paced clients POST at half of ours' measured peak rate, one client POSTs, then
  polls GET /orders/{id} until 200; the time from the POST's response to the first 200.

Writes bench/results/load.json; bench/report.py renders docs/performance.md and the plot from it.

    make bench BENCH_ARGS="--duration 20 --concurrency 16"
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "src"))

from app.eventlog.streams import stream_key_for  # noqa: E402
from app.platform import schema  # noqa: E402
from app.processes.embedded import free_port  # noqa: E402

BODY = json.dumps(
    {"customer_id": "bench", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 2, "unit_price": "9.99"}]}
).encode()
TOKEN = f"bench-{uuid.uuid4().hex}"
MASTER_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()  # ORDERSTREAM_MASTER_KEY of the runs
PARTITIONS = 4  # orderstream's stream partitions (its default)
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
# The same for every app: the production config (gunicorn.conf.py: sync workers, JSON access log),
# which gunicorn would load anyway from the working directory, named explicitly so that the peer (run
# from bench/) gets it too; 2 workers; and no recycling (the config's max_requests=20000 would replace
# workers during a run, and hide a leak from bench/soak.py).
GUNICORN = [
    "--config",
    str(REPO / "gunicorn.conf.py"),
    "--workers",
    "2",
    "--max-requests",
    "0",
    "--no-control-socket",
    "--log-level",
    "warning",
]


@dataclass(frozen=True)
class Load:
    """What one client sends: a POST (with or without every guarantee) or a GET over some ids."""

    method: str = "POST"
    guarantees: bool = False  # a unique Idempotency-Key and X-Request-ID per request
    ids: tuple[str, ...] = ()

    def request(self, rng: random.Random) -> tuple[str, str, bytes | None, dict[str, str], int]:
        if self.method == "GET":
            return "GET", f"/orders/{rng.choice(self.ids)}", None, HEADERS, 200
        headers = HEADERS
        if self.guarantees:
            headers = {**HEADERS, "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": uuid.uuid4().hex}
        return "POST", "/orders", BODY, headers, 201


POST_BARE = Load()
POST_OURS = Load(guarantees=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
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
def process(argv: list[str], env: dict[str, str], log: str, cwd: Path = REPO) -> Iterator[subprocess.Popen[bytes]]:
    """A service process, its output in bench/results/<log>.log; stopped (continued if paused) at exit."""
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{log}.log", "wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


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


def _client(port: int, load: Load, until: float, stop: Any, interval: float, out: Any) -> None:
    """Send requests one after another (a new connection each: sync workers close them), or paced."""
    rng = random.Random()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_at = time.monotonic() + rng.uniform(0, interval)
    while time.monotonic() < until and not stop.is_set():
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
        method, path, body, headers, expected = load.request(rng)
        start = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            status = str(response.status)
        except OSError as exc:
            status = type(exc).__name__
        if status == str(expected):
            latencies.append(time.perf_counter() - start)
        else:
            errors[status] = errors.get(status, 0) + 1
    out.put((latencies, errors))


def _client_process(port: int, load: Load, threads: int, until: float, stop: Any, interval: float, out: Any) -> None:
    workers = [threading.Thread(target=_client, args=(port, load, until, stop, interval, out)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def drive(
    port: int, load: Load, concurrency: int, seconds: float, rate: float = 0.0, stop: Any = None
) -> dict[str, Any]:
    """`concurrency` clients in 2 processes for `seconds` (or until `stop` is set): each sends its next
    request as soon as the last is answered, or, with `rate`, all together at about `rate` requests/s."""
    out: Any = multiprocessing.Queue()
    stop = stop if stop is not None else multiprocessing.Event()
    interval = concurrency / rate if rate else 0.0
    started = time.monotonic()
    until = started + seconds
    procs = [
        multiprocessing.Process(target=_client_process, args=(port, load, n, until, stop, interval, out))
        for n in (concurrency // 2, concurrency - concurrency // 2)
        if n
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    for _ in range(concurrency):
        got, failed = out.get()
        latencies += got
        for status, n in failed.items():
            errors[status] = errors.get(status, 0) + n
    for p in procs:
        p.join()
    elapsed = min(seconds, time.monotonic() - started)
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "errors": sum(errors.values()),
        "error_statuses": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "latencies": latencies,  # for merge(); not written out
    }


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Phases of one kind together: requests/s over their whole time, percentiles over all requests."""
    latencies = [x for r in runs for x in r["latencies"]]
    return {
        "rps": sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "phases": [strip(r) for r in runs],
    }


def strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "latencies"}


def create_orders(port: int, n: int, guarantees: bool) -> list[str]:
    """n orders, POSTed by 4 threads; their ids."""
    ids: list[str] = []
    load = POST_OURS if guarantees else POST_BARE

    def post(count: int) -> None:
        rng = random.Random()
        for _ in range(count):
            method, path, body, headers, _ = load.request(rng)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            answer = response.read()
            conn.close()
            if response.status == 201:
                ids.append(json.loads(answer)["order_id"])

    threads = [threading.Thread(target=post, args=(n // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def visible(port: int, ids: list[str], timeout: float = 60) -> None:
    """Wait until GET /orders/{id} answers 200 for every id (one kept-alive client)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + timeout
    for order_id in ids:
        while True:
            conn.request("GET", f"/orders/{order_id}", headers=HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"order {order_id} not visible after {timeout:.0f}s ({response.status})")
            time.sleep(0.01)
    conn.close()


def projected_total(port: int) -> int | None:
    """How many orders the projection holds (X-Pagination of GET /orders), None if it does not say."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/orders?page_size=1", headers=HEADERS)
    response = conn.getresponse()
    response.read()
    conn.close()
    header = response.getheader("X-Pagination")
    return int(json.loads(header)["total"]) if header else None


@dataclass
class Ours:
    """orderstream's processes and what it has been sent, to let its projector catch up between phases."""

    port: int
    projector: subprocess.Popen[bytes]
    created: int = 0
    settle_waits: list[float] = field(default_factory=list)

    def post(self, concurrency: int, seconds: float, projector: bool = True) -> dict[str, Any]:
        if not projector:
            self.projector.send_signal(signal.SIGSTOP)
        try:
            result = drive(self.port, POST_OURS, concurrency, seconds)
        finally:
            if not projector:
                self.projector.send_signal(signal.SIGCONT)
        self.created += result["requests"]
        self.settle()
        return result

    def settle(self, timeout: float = 120) -> None:
        """Wait until the projection shows every order created so far, so that no phase pays for the
        catch-up of another (the projector's backlog would otherwise spill into the next app's phase)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            total = projected_total(self.port)
            if total is None:
                time.sleep(3)
                break
            if total >= self.created:
                break
            time.sleep(0.05)
        else:
            print(f"warning: projection still behind after {timeout:.0f}s", file=sys.stderr)
        self.settle_waits.append(time.monotonic() - start)


def freshness(port: int, samples: int, redis_url: str, prefix: str) -> dict[str, Any]:
    """POST an order (every guarantee on), then poll GET /orders/{id} on one kept-alive client until
    200; the time from the POST's response to the first 200. Split at the relay's XADD: the stream
    entry's id is Redis's clock (the same machine's) when the relay appended the event."""
    from redis import Redis

    streams = Redis.from_url(redis_url)
    delays, to_xadd, polls = [], [], 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(samples):
        _, path, body, headers, _ = POST_OURS.request(random.Random())
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 201:
            raise RuntimeError(f"freshness POST answered {response.status}: {answer[:200]!r}")
        answered, answered_wall = time.perf_counter(), time.time()
        order_id = json.loads(answer)["order_id"]
        while True:
            conn.request("GET", f"/orders/{order_id}", headers=HEADERS)
            response = conn.getresponse()
            response.read()
            polls += 1
            if response.status == 200:
                delays.append(time.perf_counter() - answered)
                break
        for entry_id, fields in streams.xrevrange(stream_key_for(prefix, PARTITIONS, order_id), count=500):
            if fields[b"stream_id"] == order_id.encode():
                to_xadd.append(int(entry_id.split(b"-")[0]) / 1000 - answered_wall)
                break
    conn.close()
    streams.close()
    return {
        "samples": len(delays),
        "median_ms": statistics.median(delays) * 1000,
        "p99_ms": percentile(delays, 99) * 1000,
        "max_ms": max(delays) * 1000,
        "polls_per_sample": polls / len(delays),
        # response -> XADD (ms resolution; negative when the relay appended before the client had the
        # response) and XADD -> first 200 (the projector, then the GET that finds it)
        "to_xadd_median_ms": statistics.median(to_xadd) * 1000 if to_xadd else None,
        "after_xadd_median_ms": (statistics.median(delays) - statistics.median(to_xadd)) * 1000 if to_xadd else None,
        "xadd_found": len(to_xadd),
    }


def freshness_under_load(
    ours: Ours, rate: float, concurrency: int, samples: int, redis_url: str, prefix: str
) -> dict[str, Any]:
    """Freshness samples while `concurrency` paced clients POST at `rate` requests/s in the background."""
    stop = multiprocessing.Event()
    background: dict[str, Any] = {}

    def run() -> None:
        background.update(drive(ours.port, POST_OURS, concurrency, 600, rate=rate, stop=stop))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1)  # let the background load reach its pace
    try:
        fresh = freshness(ours.port, samples, redis_url, prefix)
    finally:
        stop.set()
        thread.join()
    ours.created += background.get("requests", 0) + samples
    ours.settle()
    return {
        **fresh,
        "background_target_rps": rate,
        "background_rps": background.get("rps"),
        "background_p99_ms": background.get("p99_ms"),
        "background_errors": background.get("errors"),
    }


def machine(database_url: str, redis_url: str) -> dict[str, Any]:
    """What the figures were measured on: cores, CPU, memory, versions of everything involved."""
    from redis import Redis

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        postgres = row[0] if row else "unknown"
    redis = Redis.from_url(redis_url).info("server")["redis_version"]

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": postgres.split()[0],
        "redis": redis,
        "packages": {name: version(name) for name in ("flask", "gunicorn", "psycopg", "redis", "eventsourcing")},
    }


def start_peer(stack: ExitStack, peer_db: str, port: int) -> None:
    from peer_eventsourcing import postgres_env

    env = postgres_env(peer_db)
    bench = REPO / "bench"
    subprocess.run(
        [sys.executable, "peer_eventsourcing.py", "--create-tables"], cwd=bench, env={**os.environ, **env}, check=True
    )
    argv = [str(BIN / "gunicorn"), *GUNICORN, "-b", f"127.0.0.1:{port}", "peer_eventsourcing:app"]
    stack.enter_context(process(argv, {**env, "CREATE_TABLE": "no"}, "load-peer", cwd=bench))


def ours_env(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ORDERSTREAM_KEY_PREFIX": prefix,
        "ORDERSTREAM_ADMIN_TOKEN": TOKEN,
        "ORDERSTREAM_MASTER_KEY": MASTER_KEY,
        "ORDERSTREAM_RATE_LIMIT": "1000000 per second",  # measure the service, not the limiter's refusals
        "ORDERSTREAM_PROJECTIONS": "order_summaries",
        "ORDERSTREAM_STREAM_PARTITIONS": str(PARTITIONS),  # the only group running here: trimming waits for it
        "ORDERSTREAM_RQ_QUEUE": f"{prefix}:rq",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=16, help="seconds of POST load per app (over --rounds)")
    parser.add_argument("--get-duration", type=float, default=10, help="seconds of GET load per app")
    parser.add_argument("--rounds", type=int, default=2, help="alternating phases per app")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sweep", default="1,2,4,8,16,32", help="client counts of the sweep ('' to skip)")
    parser.add_argument("--sweep-duration", type=float, default=3, help="seconds per app and client count")
    parser.add_argument("--freshness-samples", type=int, default=300)
    parser.add_argument("--get-ids", type=int, default=1000, help="orders created per app for the GET phases")
    args = parser.parse_args()
    base_db, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    prefix = f"osbench:{uuid.uuid4().hex[:8]}"
    print(f"databases os_bench_*, Redis keys {prefix}:* (removed at the end)", flush=True)
    ports = {name: free_port() for name in ("ours", "bare", "peer")}
    phase = args.duration / args.rounds
    gunicorn = str(BIN / "gunicorn")
    began = time.monotonic()

    with ExitStack() as stack:
        stack.enter_context(_cleanup_streams(redis_url, prefix))
        ours_db, bare_db, peer_db = (stack.enter_context(database(base_db)) for _ in range(3))
        schema.upgrade(ours_db)
        with psycopg.connect(bare_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare_orders (id uuid PRIMARY KEY, body jsonb NOT NULL)")
        env = ours_env(ours_db, redis_url, prefix)
        bare_env = {"BARE_DATABASE_URL": bare_db, "REDIS_URL": redis_url, "BARE_STREAM": f"{prefix}:bare"}
        stack.enter_context(
            process([gunicorn, *GUNICORN, "-b", f"127.0.0.1:{ports['ours']}", "wsgi:app"], env, "load-web")
        )
        stack.enter_context(process([str(BIN / "orderstream"), "relay"], env, "load-relay"))
        projector = stack.enter_context(process([str(BIN / "orderstream"), "projector"], env, "load-projector"))
        # Upkeep (trimming, purging) as the Procfile runs it: rq's cron scheduler and a preloaded rq worker.
        stack.enter_context(process([str(BIN / "orderstream"), "upkeep"], env, "load-upkeep"))
        rq_argv = [str(BIN / "rq"), "worker", "-c", "workers.preload", "--url", redis_url, env["ORDERSTREAM_RQ_QUEUE"]]
        stack.enter_context(process(rq_argv, env, "load-rq"))
        bare_argv = [gunicorn, *GUNICORN, "-b", f"127.0.0.1:{ports['bare']}", "--chdir", "bench", "bare_app:app"]
        stack.enter_context(process(bare_argv, bare_env, "load-bare"))
        start_peer(stack, peer_db, ports["peer"])
        for port in ports.values():
            wait_up(port)
        ours = Ours(ports["ours"], projector)
        info = machine(base_db, redis_url)

        print(f"warm-up ({args.concurrency} clients, 2 s each)", flush=True)
        drive(ports["bare"], POST_BARE, args.concurrency, 2)
        drive(ports["peer"], POST_BARE, args.concurrency, 2)
        ours.post(args.concurrency, 2)

        print(f"POST /orders: {args.rounds} rounds of {phase:.0f} s per app", flush=True)
        post: dict[str, list[dict[str, Any]]] = {"bare": [], "peer": [], "ours": [], "ours_no_projector": []}
        for _ in range(args.rounds):
            post["bare"].append(drive(ports["bare"], POST_BARE, args.concurrency, phase))
            post["peer"].append(drive(ports["peer"], POST_BARE, args.concurrency, phase))
            post["ours"].append(ours.post(args.concurrency, phase))
            post["ours_no_projector"].append(ours.post(args.concurrency, phase, projector=False))

        print(f"GET /orders/{{id}}: {args.get_ids} orders each, {args.rounds} rounds", flush=True)
        bare_ids = create_orders(ports["bare"], args.get_ids, guarantees=False)
        our_ids = create_orders(ports["ours"], args.get_ids, guarantees=True)
        ours.created += len(our_ids)
        visible(ports["ours"], our_ids)
        get: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
        get_phase = args.get_duration / args.rounds
        for _ in range(args.rounds):
            get["bare"].append(drive(ports["bare"], Load("GET", ids=tuple(bare_ids)), args.concurrency, get_phase))
            get["ours"].append(drive(ports["ours"], Load("GET", ids=tuple(our_ids)), args.concurrency, get_phase))

        levels = [int(c) for c in args.sweep.split(",") if c.strip()]
        print(f"sweep: POST at {levels} clients, {args.sweep_duration:.0f} s per app and level", flush=True)
        sweep: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
        for clients in levels:
            bare_run = drive(ports["bare"], POST_BARE, clients, args.sweep_duration)
            sweep["bare"].append({"clients": clients, **strip(bare_run)})
            sweep["ours"].append({"clients": clients, **strip(ours.post(clients, args.sweep_duration))})

        peak = merge(post["ours"])["rps"]
        print(f"freshness: {args.freshness_samples} samples under a paced load of {peak / 2:.0f} POST/s", flush=True)
        fresh = freshness_under_load(ours, peak / 2, args.concurrency, args.freshness_samples, redis_url, prefix)

    results = {
        "machine": info,
        "settings": {
            "concurrency": args.concurrency,
            "post_seconds_per_app": args.duration,
            "get_seconds_per_app": args.get_duration,
            "rounds": args.rounds,
            "sweep_seconds": args.sweep_duration,
            "gunicorn": " ".join(GUNICORN).replace(str(REPO) + "/", ""),
            "total_seconds": round(time.monotonic() - began),
            "projector_settle_s": sum(ours.settle_waits),
        },
        "post": {name: merge(runs) for name, runs in post.items()},
        "get": {name: merge(runs) for name, runs in get.items()},
        "sweep": sweep,
        "freshness": fresh,
    }
    p, g = results["post"], results["get"]
    results["ratios"] = {
        "post_rps_vs_bare": p["ours"]["rps"] / p["bare"]["rps"],
        "post_rps_vs_peer": p["ours"]["rps"] / p["peer"]["rps"],
        "post_p99_vs_bare": p["ours"]["p99_ms"] / p["bare"]["p99_ms"],
        "post_no_projector_rps_vs_bare": p["ours_no_projector"]["rps"] / p["bare"]["rps"],
        "post_no_projector_rps_vs_peer": p["ours_no_projector"]["rps"] / p["peer"]["rps"],
        "post_no_projector_p99_vs_bare": p["ours_no_projector"]["p99_ms"] / p["bare"]["p99_ms"],
        "peer_rps_vs_bare": p["peer"]["rps"] / p["bare"]["rps"],
        "get_rps_vs_bare": g["ours"]["rps"] / g["bare"]["rps"],
        "get_p99_vs_bare": g["ours"]["p99_ms"] / g["bare"]["p99_ms"],
    }
    print_report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {(RESULTS / 'load.json').relative_to(REPO)}; docs by bench/report.py")


@contextmanager
def _cleanup_streams(redis_url: str, prefix: str) -> Iterator[None]:
    from redis import Redis

    try:
        yield
    finally:
        redis = Redis.from_url(redis_url)
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)


def print_report(r: dict[str, Any]) -> None:
    m, s = r["machine"], r["settings"]
    print(
        f"\n{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}; {s['concurrency']} clients, {s['total_seconds']} s in all"
    )
    header = f"{'':34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    rows = {
        "POST bare INSERT+XADD": r["post"]["bare"],
        "POST Flask+eventsourcing peer": r["post"]["peer"],
        "POST orderstream": r["post"]["ours"],
        "POST orderstream, no projector": r["post"]["ours_no_projector"],
        "GET bare SELECT by key": r["get"]["bare"],
        "GET orderstream": r["get"]["ours"],
    }
    print(header)
    for name, x in rows.items():
        print(f"{name:34}{x['rps']:>9.0f}{x['p50_ms']:>9.2f}{x['p99_ms']:>9.2f}{x['errors']:>8}")
    print("ratios:")
    for name, value in r["ratios"].items():
        print(f"  {name:34}{value:>6.2f}")
    print("sweep (clients: bare req/s p99 ms | ours req/s p99 ms):")
    for b, o in zip(r["sweep"]["bare"], r["sweep"]["ours"], strict=True):
        print(
            f"  {b['clients']:>3}: {b['rps']:>6.0f} {b['p99_ms']:>7.1f} | {o['rps']:>6.0f} {o['p99_ms']:>7.1f}"
            f"   ratio {o['rps'] / b['rps']:.2f}"
        )
    f = r["freshness"]
    print(
        f"freshness at {f['background_rps']:.0f} POST/s (target {f['background_target_rps']:.0f}): "
        f"median {f['median_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms "
        f"over {f['samples']} samples"
    )
    if f.get("to_xadd_median_ms") is not None:
        print(
            f"  of the median: response -> XADD {f['to_xadd_median_ms']:.1f} ms, "
            f"XADD -> visible at GET {f['after_xadd_median_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
