"""A/B: the working tree against another revision of orderstream, under the same load, in one run.

What a change costs on the hot paths, as a ratio on this machine: both revisions run side by side
(each its own database, stream keys, web with its own gunicorn.conf.py, relay and projector), and
their phases alternate (A, B, B, A, ...) so that drift hits both alike. POST /orders with every
guarantee on, and GET /orders/{id} over orders already projected, as bench/load.py drives them.

    .venv/bin/orderstream services -- .venv/bin/python bench/ab.py --base 4cb7d06
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from load import (  # type: ignore[import-not-found]
    BIN,
    GUNICORN,
    MASTER_KEY,
    POST_OURS,
    REPO,
    RESULTS,
    TOKEN,
    Load,
    create_orders,
    database,
    drive,
    merge,
    process,
    visible,
    wait_up,
)

from app.processes.embedded import free_port


@contextmanager
def checkout(revision: str) -> Any:
    """The revision's tree, in a temporary git worktree."""
    where = Path(tempfile.mkdtemp(prefix="orderstream-ab-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), revision], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True)


# The orderstream CLI of whichever tree PYTHONPATH names (the console script knows only this tree's layout).
CLI = [sys.executable, "-c", "import sys\ntry:\n    from app.entry.cli import main\nexcept ImportError:\n"
       "    from app.cli import main\nsys.argv[0] = 'orderstream'\nmain()"]  # fmt: skip


@contextmanager
def orderstream(tree: Path, name: str, stack: ExitStack) -> Any:
    """One revision's web (2 workers, its gunicorn.conf.py), relay, projector and, where the revision has
    them, upkeep, an rq worker, the fulfilment process manager and the webhooks' dispatcher and sender;
    yields its port."""
    url = stack.enter_context(database(os.environ["DATABASE_URL"]))
    env = {"PYTHONPATH": str(tree / "src"), "DATABASE_URL": url, "ORDERSTREAM_KEY_PREFIX": f"ab-{name}",
           "ORDERSTREAM_ADMIN_TOKEN": TOKEN, "ORDERSTREAM_RATE_LIMIT": "1000000 per second",
           "ORDERSTREAM_RQ_QUEUE": f"ab-{name}", "ORDERSTREAM_MASTER_KEY": MASTER_KEY}  # fmt: skip
    subprocess.run([*CLI, "migrate"], env={**os.environ, **env}, check=True, capture_output=True, cwd=tree)
    port = free_port()
    config = [str(tree / "gunicorn.conf.py") if a == str(REPO / "gunicorn.conf.py") else a for a in GUNICORN]
    args = [*config, "--bind", f"127.0.0.1:{port}", "wsgi:app"]
    stack.enter_context(process([str(BIN / "gunicorn"), *args], env, f"ab-{name}-web", cwd=tree))
    stack.enter_context(process([*CLI, "relay"], env, f"ab-{name}-relay", cwd=tree))
    stack.enter_context(process([*CLI, "projector"], env, f"ab-{name}-projector", cwd=tree))
    if "upkeep:" in (tree / "Procfile").read_text():  # upkeep left the relay: run it where the tree has it
        stack.enter_context(process([*CLI, "upkeep"], env, f"ab-{name}-upkeep", cwd=tree))
        rq = [str(BIN / "rq"), "worker", "-c", "workers.preload", "--url", os.environ["REDIS_URL"], f"ab-{name}"]
        stack.enter_context(process(rq, env, f"ab-{name}-rq", cwd=tree))
    if "fulfilment:" in (tree / "Procfile").read_text():  # the process manager, where the tree has one
        stack.enter_context(process([*CLI, "fulfilment"], env, f"ab-{name}-fulfilment", cwd=tree))
    if "webhooks:" in (tree / "Procfile").read_text():  # the webhooks' dispatcher and sender (no endpoint)
        stack.enter_context(process([*CLI, "webhooks"], env, f"ab-{name}-webhooks", cwd=tree))
        sender = [*rq[:2], "-w", "rq.worker.SimpleWorker", *rq[2:-1], f"ab-{name}-webhooks"]
        stack.enter_context(process(sender, env, f"ab-{name}-sender", cwd=tree))
    wait_up(port)
    yield port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare the working tree with")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases per revision and kind (alternating)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        "base": {"post": [], "get": []},
        "head": {"post": [], "get": []},
    }
    with ExitStack() as stack:
        base_tree = stack.enter_context(checkout(args.base))
        ports = {
            "base": stack.enter_context(orderstream(base_tree, "base", stack)),
            "head": stack.enter_context(orderstream(REPO, "head", stack)),
        }
        reads = {}
        for side, port in ports.items():
            ids = create_orders(port, 400, guarantees=True)
            visible(port, ids)
            reads[side] = Load(method="GET", ids=tuple(ids))
        for round_ in range(args.rounds):
            order = ("base", "head") if round_ % 2 == 0 else ("head", "base")
            for side in order:
                results[side]["post"].append(drive(ports[side], POST_OURS, args.concurrency, args.duration))
            for side in reversed(order):
                results[side]["get"].append(drive(ports[side], reads[side], args.concurrency, args.duration))
    report = {side: {kind: merge(runs) for kind, runs in kinds.items()} for side, kinds in results.items()}
    report["base_revision"] = args.base  # type: ignore[assignment]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ab.json").write_text(json.dumps(report, indent=2))
    print(f"base {args.base} against the working tree, {args.concurrency} clients, {os.cpu_count()} cores:")
    for kind in ("post", "get"):
        base, head = report["base"][kind], report["head"][kind]
        print(
            f"  {kind.upper():4} base {base['rps']:7.0f} req/s p99 {base['p99_ms']:6.1f} ms | head {head['rps']:7.0f}"
            f" req/s p99 {head['p99_ms']:6.1f} ms | ratio {head['rps'] / base['rps']:.2f}x,"
            f" p99 {head['p99_ms'] / base['p99_ms']:.2f}x  (errors {base['errors']}/{head['errors']})"
        )


if __name__ == "__main__":
    main()
