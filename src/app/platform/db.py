"""The SQLAlchemy engine, built by whoever composes a process (never at import time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
import sqlalchemy.exc
from psycopg.types.json import set_json_loads
from sqlalchemy import Connection, Engine, create_engine, text

from app.platform.config import Settings


def make_engine(settings: Settings, pool_size: int = 5) -> Engine:
    """An engine on psycopg 3 with a pool sized to the process.

    No pre-ping (it costs a round trip per checkout): a connection that turns out dead raises a
    disconnect error, and SQLAlchemy then discards the whole pool, so the next checkout is fresh.
    """
    set_json_loads(orjson.loads)  # jsonb columns (payloads, metadata) parsed by orjson, process-wide
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
        json_serializer=lambda obj: json.dumps(obj, separators=(",", ":")),
    )


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one (same session, same transaction)."""
    return conn.connection.driver_connection  # type: ignore[return-value]


def ping(engine: Engine) -> None:
    """Raise unless PostgreSQL answers (a pooled connection, a trivial statement)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@contextmanager
def pipelined_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction whose statements are pipelined: BEGIN travels with the first, COMMIT with the last.

    Statements inside must run on the psycopg connection (`driver(conn)`): each waits only when its
    result is read, so a transaction costs one round trip per result it needs, not per statement.
    Anything raised inside rolls it back; a lost server empties the pool (`autocommit`).
    """
    with autocommit(engine) as conn:
        pg = driver(conn)
        try:
            with pg.pipeline():
                pg.execute("BEGIN")
                yield conn
                commit = pg.execute("COMMIT")
        except BaseException:
            if not _unusable(pg) and pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                # psycopg's rollback, not a ROLLBACK statement: it also forgets the statements psycopg
                # believes it prepared in the aborted pipeline (the server skipped them), which would
                # otherwise fail every later transaction on this connection.
                pg.rollback()
            raise
        if commit.statusmessage != "COMMIT":  # an error swallowed inside turns COMMIT into ROLLBACK
            raise psycopg.errors.InFailedSqlTransaction(f"the transaction was rolled back ({commit.statusmessage})")


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A pooled connection in autocommit mode, for statements run on its psycopg connection.

    SQLAlchemy empties its pool when it sees a connection die, but statements sent straight to
    psycopg bypass it: so here, an unusable connection is dropped and the pool with it (every other
    pooled connection is as stale after a PostgreSQL restart or failover), as SQLAlchemy would.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            yield conn
        except BaseException as exc:
            if _unusable(driver(conn)):  # never back to the pool (an interrupt mid-pipeline, too)
                conn.invalidate()
                if isinstance(exc, psycopg.OperationalError):
                    engine.dispose(close=False)
            raise


# Errors that say the database is unreachable or busy (a lost connection, a deadlock, a timeout, an
# exhausted pool), whether they come through SQLAlchemy or straight from psycopg: retry, never poison.
TRANSIENT_DB_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _unusable(pg: psycopg.Connection[Any]) -> bool:
    """Dead, or stuck in pipeline mode: a connection that died mid-pipeline, before psycopg noticed,
    cannot leave it (and so cannot even roll back)."""
    return pg.closed or pg.broken or pg.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF
