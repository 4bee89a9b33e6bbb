"""supervisord's event listener: every exit and restart logged, counted and judged.

supervisord tells this process of every state change (its event protocol, supervisor.childutils):

- an exit nobody asked for: EXITED (the process had been running) or BACKOFF (it died while
  starting). Logged with how it ended, in supervisord's own words ("terminated by SIGKILL",
  "exit status 1"), and kept in the crash-loop window;
- a restart: STARTING right after such an exit. Counted; `orderstream_process_restarts_total` and
  `/admin/health` read the count (app/platform/metrics.py, app/endpoints/admin/processes.py);
- a process that exits ORDERSTREAM_CRASH_LOOP_EXITS (5) times within ORDERSTREAM_CRASH_LOOP_WINDOW_S
  (60), or that supervisord gives up starting (FATAL), is stopped and reported failed, loudly: an
  ERROR line saying how to start it again, `orderstream_process_failed` = 1, /admin/health and a red
  banner on /admin. Started again by hand, it begins a new window.

The records live in the run directory (`processes.json`), so they survive a restart of this listener.

    python -m app.processes.listener   (supervisord starts it: see app/processes/supervision.py)
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor import childutils

from app.platform.logs import configure_logging
from app.processes.records import RECORDS, Records

log = logging.getLogger("orderstream.processes")
CRASH_LOOP_EXITS = int(os.environ.get("ORDERSTREAM_CRASH_LOOP_EXITS", "5"))
CRASH_LOOP_WINDOW_S = float(os.environ.get("ORDERSTREAM_CRASH_LOOP_WINDOW_S", "60"))
AUTOMATIC_STARTS = ("EXITED", "BACKOFF")  # a STARTING from these is supervisord's restart, not an operator's


def how_it_ended(rpc: Any, name: str) -> str:
    """supervisord's words for the last exit of `name`: the tail of its log says it."""
    try:
        tail = str(rpc.supervisor.readLog(-20_000, 0))
    except Exception:  # the log may be unreadable a moment: the exit still counts
        return "exited"
    found = re.findall(rf"exited: {re.escape(name)} \(([^)]*)\)", tail)
    return found[-1] if found else "exited"


class Listener:
    def __init__(self, rpc: Any, records: Records) -> None:
        self.rpc, self.records = rpc, records

    def start(self) -> None:
        """Every process known from the start (its counts at zero)."""
        for info in self.rpc.supervisor.getAllProcessInfo():
            self.records.of(info["name"], info["group"])
        self.records.save()

    def handle(self, event: str, payload: dict[str, str]) -> None:
        name, group = payload.get("processname", ""), payload.get("groupname", "")
        record = self.records.of(name, group)
        if event in ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"):
            self.exited(name, group, payload.get("pid", "?"), starting=event.endswith("BACKOFF"))
        elif event == "PROCESS_STATE_STARTING" and payload.get("from_state") in AUTOMATIC_STARTS:
            record["restarts"] += 1
        elif event == "PROCESS_STATE_FATAL":
            self.fail(name, group, "supervisord could not start it (it kept exiting while starting)")
        elif event == "PROCESS_STATE_RUNNING" and record["failed"]:
            record["failed"] = None  # started again by hand: no longer failed
            log.info("process %s is running again", name, extra={"supervised": name})
        self.records.save()

    def exited(self, name: str, group: str, pid: str, starting: bool) -> None:
        record, now = self.records.of(name, group), time.time()
        ended = how_it_ended(self.rpc, name) + ("; while starting" if starting else "")
        record["recent_exits"] = [t for t in record["recent_exits"] if t > now - CRASH_LOOP_WINDOW_S] + [now]
        record["last_exit"] = {"at": datetime.fromtimestamp(now, UTC).isoformat(), "how": ended, "pid": pid}
        recent = len(record["recent_exits"])
        log.warning(
            "process %s (pid %s) exited unasked (%s); %d exits within %.0f s, restarts so far %d",
            name, pid, ended, recent, CRASH_LOOP_WINDOW_S, record["restarts"],
            extra={"supervised": name, "pid": pid, "exit": ended, "recent_exits": recent},
        )  # fmt: skip
        if recent >= CRASH_LOOP_EXITS:
            self.fail(name, group, f"it exited {recent} times within {CRASH_LOOP_WINDOW_S:.0f} s (last: {ended})")
            try:
                self.rpc.supervisor.stopProcess(f"{group}:{name}", False)
            except Exception as exc:  # not running at this instant: supervisord's FATAL does the rest
                log.info("could not stop %s: %s", name, exc)

    def fail(self, name: str, group: str, why: str) -> None:
        record = self.records.of(name, group)
        record["failed"] = {"at": datetime.now(UTC).isoformat(), "why": why}
        record["recent_exits"] = []  # started again by hand, it begins a new window
        config = Path(os.environ.get("ORDERSTREAM_RUN_DIR", ".")) / "supervisord.conf"
        log.error(
            "PROCESS %s FAILED: %s. It is stopped; fix the cause, then: %s -c %s start %s:%s",
            name, why, Path(sys.executable).parent / "supervisorctl", config, group, name,
            extra={"supervised": name, "failed": why},
        )  # fmt: skip


def main() -> None:
    configure_logging()
    run_dir = Path(os.environ["ORDERSTREAM_RUN_DIR"])
    listener = Listener(childutils.getRPCInterface(os.environ), Records(run_dir / RECORDS))
    listener.start()
    protocol = childutils.listener
    while True:
        headers, body = protocol.wait(sys.stdin, sys.stdout)
        try:
            listener.handle(headers["eventname"], childutils.get_headers(body))
        except Exception:  # a listener that dies loses nothing (records are on disk): log and go on
            log.exception("could not record %s", headers.get("eventname"))
        protocol.ok(sys.stdout)


if __name__ == "__main__":
    main()
