"""The embedded servers of a data directory, under a supervisord of their own, shared.

PostgreSQL and Redis belong to the data directory, not to one launcher: `orderstream run`, a second
`orderstream run` beside it, and `orderstream services` (what `make test` uses) all attach to the same
servers. The first to attach starts their supervisord (which restarts a killed server like any
process, and reports a server that keeps crashing as failed); the last to detach stops it. Who
attaches holds a shared lock on `servers/users.lock` for as long as it uses them; starting and
stopping happen under `servers/start.lock`, so launchers starting at once cannot both start servers.
The supervisord logs to files in `servers/`: it must outlive the launcher that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil

from app.platform.config import REPO
from app.processes.embedded import DATA_DIR, EmbeddedPostgres, EmbeddedRedis, GiveUp, free_port, require_embedded
from app.processes.supervision import Supervisor, listener_command, render, socket_url

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent


@contextlib.contextmanager
def _locked(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[IO[str]]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        yield handle


class EmbeddedServers:
    """The data directory's PostgreSQL and Redis, and the supervisord that runs them."""

    def __init__(self, data_dir: Path = DATA_DIR) -> None:
        self.root = data_dir / "servers"
        self.postgres, self.redis = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
        self.users: IO[str] | None = None
        self.supervisord: subprocess.Popen[bytes] | None = None

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(socket_url(self.root))

    def attach(self, give_up: GiveUp = lambda: False) -> dict[str, str]:
        """DATABASE_URL and REDIS_URL of the servers, started if nobody runs them; they stay up until
        `detach` (the last user's stops them). EmbeddedServersMissing without the `embedded` extra."""
        require_embedded()
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / "start.lock"):  # one launcher at a time: starts them, or finds them
            ports = self._running() or self._start()
            self.users = (self.root / "users.lock").open("a")
            fcntl.flock(self.users, fcntl.LOCK_SH)
            return {
                "DATABASE_URL": self.postgres.create_database(ports["postgres"], give_up),
                "REDIS_URL": self.redis.wait_until_up(ports["redis"], give_up),
            }

    def detach(self) -> None:
        """Stop using the servers; stop them if nobody else does."""
        if self.users is None:
            return
        self.users.close()  # our shared lock goes with it
        self.users = None
        with _locked(self.root / "start.lock"), (self.root / "users.lock").open("a") as users:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another launcher still uses them
            self._stop()

    def _running(self) -> dict[str, int] | None:
        """The servers' ports, if their supervisord runs."""
        try:
            ports: dict[str, int] = json.loads((self.root / "ports.json").read_text())
            self.supervisor.rpc.getState()
            return ports
        except (OSError, ValueError, xmlrpc.client.Error):
            return None

    def _start(self) -> dict[str, int]:
        with contextlib.suppress(OSError, ValueError):  # servers left by a supervisord that died
            self.redis.stop_unsupervised(json.loads((self.root / "ports.json").read_text())["redis"])
        self.postgres.stop_unsupervised()
        ports = {"postgres": free_port(), "redis": free_port()}
        (self.root / "ports.json").write_text(json.dumps(ports))
        programs = [self.postgres.program(ports["postgres"]), self.redis.program(ports["redis"])]
        config = self.root / "supervisord.conf"
        config.write_text(render(self.root, REPO, programs, listener_command()))
        env = {**os.environ, "ORDERSTREAM_RUN_DIR": str(self.root), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log.info("starting the embedded PostgreSQL (port %s) and Redis (port %s) under supervisord in %s",
                 ports["postgres"], ports["redis"], self.root)  # fmt: skip
        with (self.root / "supervisord.out").open("ab") as out:
            self.supervisord = subprocess.Popen(
                [str(BIN / "supervisord"), "-c", str(config)], env=env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.supervisor.rpc.startProcessGroup("servers", False)
                return ports
            except (OSError, xmlrpc.client.Error):
                if self.supervisord.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the servers' supervisord did not start; see {self.root}") from None
                time.sleep(0.05)

    def _stop(self) -> None:
        """Stop the servers (gracefully: supervisord stops them, then itself) and wait for it."""
        try:
            pid = int((self.root / "supervisord.pid").read_text())
            self.supervisor.shutdown()
        except (OSError, ValueError, xmlrpc.client.Error):
            return  # not running
        log.info("stopping the embedded servers")
        if self.supervisord is not None and self.supervisord.pid == pid:
            self.supervisord.wait(120)
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and psutil.pid_exists(pid):
            time.sleep(0.1)


@contextlib.contextmanager
def embedded_services(data_dir: Path = DATA_DIR) -> Iterator[dict[str, str]]:
    """Attach to the data directory's servers for the duration of the block: their URLs."""
    servers = EmbeddedServers(data_dir)
    try:
        yield servers.attach()
    finally:
        servers.detach()
