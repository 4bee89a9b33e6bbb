"""`orderstream run` under supervisord: the Procfile's processes as supervisor programs.

Supervisor (supervisord) restarts a process that exits unexpectedly while the others keep serving:
one that dies after running is started again at once, one that dies while starting is retried with
a growing delay (1 s, 2 s, ... up to `startretries`). Every state change reaches an event listener
(app/processes/listener.py), which logs restarts, counts them in the metrics and reports a process
that keeps crashing as failed. The Procfile stays the one list of processes; each line becomes a
program run through `sh -c 'exec …'` (shell expansion as honcho did, and the program's pid is the
process itself, so a signal reaches it directly).

Everything a running instance keeps on disk is in its own run directory: supervisord's socket,
pid file, log and configuration, the Prometheus multiprocess directory, the process records.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
import xmlrpc.client
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

STOP_WAIT_S = 25  # more than gunicorn's graceful_timeout (20 s): in-flight requests and batches finish
START_SECONDS = 2  # a process that exits sooner has failed to start (retried with a growing delay)
START_RETRIES = 5
RPC_TIMEOUT_S = 10.0
APP_PRIORITY, SERVER_PRIORITY = 100, 10  # servers start first and stop last
GROUPS = ("servers", "app")  # the embedded servers (when this instance runs them), the Procfile's processes
_PROCFILE_LINE = re.compile(r"([A-Za-z0-9_-]+):\s*(.+)")


@dataclass(frozen=True)
class Program:
    """One supervisor program: a Procfile line (or an embedded server), run `count` times."""

    name: str
    command: str  # a shell command line
    count: int = 1
    priority: int = APP_PRIORITY
    user: str | None = None
    log: str = "/dev/stdout"  # where its output goes (the terminal, like honcho; servers to a file)
    stop_signal: str = "TERM"


def read_procfile(path: Path, concurrency: dict[str, int] | None = None) -> list[Program]:
    """The Procfile's processes, `concurrency` saying how many of each (one by default)."""
    programs = []
    for line in path.read_text().splitlines():
        found = _PROCFILE_LINE.fullmatch(line.strip())
        if found:
            name, command = found.groups()
            programs.append(Program(name, command, (concurrency or {}).get(name, 1)))
    unknown = set(concurrency or {}) - {p.name for p in programs}
    if unknown:
        raise ValueError(f"no process {', '.join(sorted(unknown))} in {path}")
    return programs


def parse_concurrency(text: str) -> dict[str, int]:
    """`projector=2,relay=2` as {"projector": 2, "relay": 2}."""
    counts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{part!r}: give NAME=COUNT with a count of at least 1")
        counts[name.strip()] = int(count)
    return counts


def socket_url(run_dir: Path) -> str:
    return f"unix://{run_dir / 'supervisor.sock'}"


def render(run_dir: Path, workdir: Path, programs: Iterable[Program], listener: str) -> str:
    """supervisord's configuration for this instance."""
    sections = [
        f"[unix_http_server]\nfile={_escaped(run_dir / 'supervisor.sock')}\nchmod=0700\n",
        "[supervisord]\nnodaemon=true\nloglevel=info\n"
        + ("user=root\n" if os.geteuid() == 0 else "")
        + f"logfile={_escaped(run_dir / 'supervisord.log')}\nlogfile_maxbytes=10MB\nlogfile_backups=2\n"
        f"pidfile={_escaped(run_dir / 'supervisord.pid')}\nchildlogdir={_escaped(run_dir)}\n"
        f"identifier=orderstream-{run_dir.name}\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        f"[supervisorctl]\nserverurl={_escaped(socket_url(run_dir))}\n",
        f"[eventlistener:process-events]\ncommand={_escaped(listener)}\nevents=PROCESS_STATE\nbuffer_size=1000\n"
        "autorestart=true\nstdout_logfile=NONE\nstderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0\n"
        "priority=1\n",
    ]
    # Programs in a group start and stop together: the service's processes in parallel, then the servers.
    programs = list(programs)
    for group, members in (("servers", [p for p in programs if p.priority == SERVER_PRIORITY]),
                           ("app", [p for p in programs if p.priority != SERVER_PRIORITY])):  # fmt: skip
        if members:
            sections.append(f"[group:{group}]\nprograms={','.join(p.name for p in members)}\n"
                            f"priority={members[0].priority}\n")  # fmt: skip
        sections += [_program(program, workdir) for program in members]
    return "\n".join(sections)


def _program(program: Program, workdir: Path) -> str:
    lines = [
        f"[program:{program.name}]",
        f"command=/bin/sh -c {_escaped(shlex.quote('exec ' + program.command))}",
        f"directory={_escaped(workdir)}",
        "process_name=%(program_name)s.%(process_num)d",
        f"numprocs={program.count}",
        "numprocs_start=1",
        "autostart=false",  # started in order by the launcher, after the migrations
        "autorestart=true",  # any exit it was not asked for is a crash
        f"startsecs={START_SECONDS}",
        f"startretries={START_RETRIES}",
        f"stopsignal={program.stop_signal}",
        f"stopwaitsecs={STOP_WAIT_S}",
        "killasgroup=true",  # what is left after stopwaitsecs goes with its children (workers, work-horses)
        f"priority={program.priority}",
        f"stdout_logfile={_escaped(program.log)}",
        "stdout_logfile_maxbytes=0" if program.log.startswith("/dev/") else "stdout_logfile_maxbytes=10MB",
        "redirect_stderr=true",
        'environment=ORDERSTREAM_PROCESS="%(program_name)s.%(process_num)d"',
    ]
    if program.user:
        lines.append(f"user={program.user}")
    return "\n".join(lines) + "\n"


def _escaped(value: object) -> str:
    return str(value).replace("%", "%%")


def listener_command() -> str:
    """How supervisord starts the event listener (this Python, this package)."""
    return f"{shlex.quote(sys.executable)} -m app.processes.listener"


class _TimedConnection(UnixStreamHTTPConnection):
    """supervisor's unix-socket HTTP connection, with a timeout (a frozen supervisord must not hold
    a web thread for ever)."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(RPC_TIMEOUT_S)
        self.sock.connect(self.socketfile)


class Supervisor:
    """supervisord's XML-RPC interface, over its unix socket."""

    def __init__(self, url: str) -> None:
        transport = SupervisorTransport(None, None, url)
        if url.startswith("unix://"):

            def connection() -> _TimedConnection:
                made = _TimedConnection("localhost")
                made.socketfile = url.removeprefix("unix://")
                return made

            transport._get_connection = connection
        self.rpc: Any = xmlrpc.client.ServerProxy("http://localhost", transport=transport).supervisor

    def processes(self) -> list[dict[str, Any]]:
        """Every process: group, name, statename, pid, start, now, exitstatus, description."""
        return list(self.rpc.getAllProcessInfo())

    def start(self, groups: Iterable[str]) -> None:
        """Start these programs' processes all at once (not one after another's start time)."""
        for group in groups:
            self.rpc.startProcessGroup(group, False)

    def stop(self, group: str, name: str) -> None:
        self.rpc.stopProcess(f"{group}:{name}", False)

    def shutdown(self) -> None:
        self.rpc.shutdown()
