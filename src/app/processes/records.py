"""What happened to each supervised process (restarts, last exit, failure), as the event listener
(app/processes/listener.py) records it in the run directory, and those records as Prometheus series."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

RECORDS = "processes.json"


class Records:
    """What happened to each process, kept in the run directory for the web to show."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.processes: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def of(self, name: str, group: str) -> dict[str, Any]:
        return self.processes.setdefault(
            name, {"group": group, "restarts": 0, "recent_exits": [], "last_exit": None, "failed": None}
        )

    def save(self) -> None:
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.processes, indent=1))
        partial.replace(self.path)  # readers never see half a file


def read_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The listener's records of a run directory (empty before the first event)."""
    try:
        return json.loads((run_dir / RECORDS).read_text())
    except (OSError, ValueError):
        return {}


class ProcessRecords(Collector):
    """The supervised processes' restarts and failures, as the event listener recorded them
    (app/processes/listener.py), for this instance and the embedded servers it uses."""

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "orderstream_process_restarts", "Times supervisord started a process again after it exited unasked",
            labels=["process"],
        )  # fmt: skip
        failed = GaugeMetricFamily(
            "orderstream_process_failed", "1 while a process is given up (it kept crashing, or could not start)",
            labels=["process"],
        )  # fmt: skip
        for variable in ("ORDERSTREAM_RUN_DIR", "ORDERSTREAM_SERVERS_DIR"):
            directory = os.environ.get(variable)
            for name, record in read_records(Path(directory)).items() if directory else ():
                restarts.add_metric([name], record.get("restarts", 0))
                failed.add_metric([name], 1 if record.get("failed") else 0)
        yield restarts
        yield failed
