"""`orderstream run`: every process of the service on this machine, supervised (app/processes/supervision.py).

The launcher attaches to the embedded PostgreSQL and Redis when DATABASE_URL and REDIS_URL are unset
(app/processes/servers.py: they have a supervisord of their own, shared by the launchers of the data
directory), applies the migrations, writes this instance's supervisord configuration into a run
directory of its own and starts supervisord, which starts the Procfile's processes together.
Ctrl-C or SIGTERM stops them all gracefully, then the servers if no other launcher uses them.

supervisord is tied to the launcher's life (PR_SET_PDEATHSIG: it stops everything if the launcher
is killed). If supervisord itself dies, the launcher stops what it left behind (every process that
carries this instance's run directory in its environment) and starts it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import psutil
import sqlalchemy.exc

from app.platform import schema
from app.platform.config import REPO
from app.processes.embedded import DATA_DIR, Stopped
from app.processes.servers import EmbeddedServers
from app.processes.supervision import (
    Supervisor,
    listener_command,
    parse_concurrency,
    read_procfile,
    render,
    socket_url,
)

BIN = Path(sys.executable).parent
SUPERVISORD_RESTARTS = 3  # supervisord itself, within a launcher's life, before the launcher gives up
log = logging.getLogger(__name__)


@contextlib.contextmanager
def run_directory(root: Path) -> Iterator[Path]:
    """This instance's own directory (named by the launcher's pid), removed when it stops; those of
    launchers that no longer run are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if stale.name.isdigit() and not psutil.pid_exists(int(stale.name)):
            shutil.rmtree(stale, ignore_errors=True)
    run_dir = root / str(os.getpid())
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "metrics").mkdir(parents=True)
    try:
        yield run_dir
    finally:
        _stop_leftovers(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def run(concurrency: str, print_banner: Callable[[dict[str, str]], None]) -> int:
    """Start everything, wait until asked to stop; the exit status."""
    programs = read_procfile(REPO / "Procfile", parse_concurrency(concurrency))
    given = {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL") if os.environ.get(k)}
    if len(given) == 1:
        raise click.UsageError("set both DATABASE_URL and REDIS_URL, or neither to use the embedded servers")
    _check_port()
    stopping: list[int] = []
    supervisord: list[subprocess.Popen[bytes]] = []
    _stop_on_signals(stopping, supervisord)
    with run_directory(DATA_DIR / "run") as run_dir, contextlib.ExitStack() as stack:
        env = {**os.environ, **given, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        env["ORDERSTREAM_RUN_DIR"] = str(run_dir)
        if not env.get("ORDERSTREAM_MASTER_KEY"):  # development: one kept in the data directory
            env["ORDERSTREAM_MASTER_KEY"] = development_master_key(DATA_DIR)
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(run_dir / "metrics"))
        try:
            if not given:
                click.echo(f"DATABASE_URL and REDIS_URL are unset: using the embedded servers in {DATA_DIR}")
                servers = EmbeddedServers(DATA_DIR)
                stack.callback(servers.detach)
                env.update(servers.attach(give_up=lambda: bool(stopping)), ORDERSTREAM_SERVERS_DIR=str(servers.root))
            _migrate(env["DATABASE_URL"], lambda: bool(stopping))
        except Stopped:
            return 0
        if stopping:  # the stop came while the migrations ran
            return 0
        config = run_dir / "supervisord.conf"
        config.write_text(render(run_dir, REPO, programs, listener_command()))
        print_banner(env)
        return _supervise(run_dir, config, env, stopping, supervisord)


def _supervise(
    run_dir: Path, config: Path, env: dict[str, str], stopping: list[int], current: list[subprocess.Popen[bytes]]
) -> int:
    """Run supervisord (and the service's processes under it) until asked to stop; start it again
    if it dies on its own."""
    deaths: list[float] = []
    while True:
        process = subprocess.Popen([str(BIN / "supervisord"), "-c", str(config)], env=env, start_new_session=True,
                                   preexec_fn=_die_with_parent)  # fmt: skip
        current[:] = [process]
        if stopping:  # asked to stop before supervisord was there to be told: tell it now
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(OSError, xmlrpc.client.Error):  # a stop may come first: then nothing starts
            if not stopping:
                _connect(run_dir, process).start(["app"])
        code = process.wait()
        if stopping:
            return 0
        deaths = [t for t in deaths if t > time.monotonic() - 60] + [time.monotonic()]
        log.error("supervisord died (exit status %s); stopping what it left running and starting it again", code)
        click.echo(f"supervisord died (exit status {code}): stopping what it left running, starting it again")
        _stop_leftovers(run_dir)
        if len(deaths) > SUPERVISORD_RESTARTS:
            click.echo("supervisord keeps dying: giving up", err=True)
            return code or 1


def _migrate(database_url: str, give_up: Callable[[], bool]) -> None:
    """Apply the migrations, waiting (bounded) for a database that is restarting."""
    deadline = time.monotonic() + 60
    while True:
        try:
            schema.upgrade(database_url)
            return
        except sqlalchemy.exc.OperationalError:
            if give_up():
                raise Stopped from None
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _check_port() -> None:
    """Refuse to start when the web's port is taken (another instance?), rather than crash-loop."""
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"{host}:{port} is taken ({exc.strerror}): another instance? Set PORT") from exc


def _connect(run_dir: Path, supervisord: subprocess.Popen[bytes]) -> Supervisor:
    deadline = time.monotonic() + 30
    while True:
        try:
            supervisor = Supervisor(socket_url(run_dir))
            supervisor.rpc.getState()
            return supervisor
        except OSError:
            if supervisord.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException(f"supervisord did not start; see {run_dir / 'supervisord.log'}") from None
            time.sleep(0.05)


def _stop_leftovers(run_dir: Path) -> None:
    """Stop every process that belongs to this instance and is still running (supervisord's orphans,
    if it died): SIGTERM, then SIGKILL for what is left after the graceful stop's time."""
    mine = str(run_dir)
    leftovers = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid != os.getpid() and process.environ().get("ORDERSTREAM_RUN_DIR") == mine:
                leftovers.append(process)
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _gone, alive = psutil.wait_procs(leftovers, timeout=30)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _stop_on_signals(stopping: list[int], supervisord: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C (the terminal signals the launcher's process group) or SIGTERM: supervisord stops
    every process gracefully; the launcher then detaches from the servers."""

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for process in supervisord:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _die_with_parent() -> None:
    """In supervisord (before exec): SIGTERM it when the launcher dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def development_master_key(data_dir: Path) -> str:
    """The master key `make run` uses when ORDERSTREAM_MASTER_KEY is unset: made once, kept in the
    data directory (mode 0600), like the development admin token. Never for production: there, the
    key lives in a secret store and the web refuses to start without it."""
    from app.eventlog.personal import new_master_key  # (the kernel's crypto; no sides imported)

    saved = data_dir / "dev-master-key"
    if not saved.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        saved.touch(mode=0o600)
        saved.write_text(new_master_key())
    return saved.read_text().strip()
