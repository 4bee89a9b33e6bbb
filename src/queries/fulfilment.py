"""Reading the fulfilment process manager's state (its table, written by workers/fulfilment): one
order's, a page of them, and the counts the admin page shows."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.platform.db import driver

_COLUMNS = (
    "order_id::text AS order_id, state, reserved, short, payment_due_at, deadline, order_version AS version, updated_at"
)


def find(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """One order's row (None: the process manager has not reacted to it)."""
    return (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(f"SELECT {_COLUMNS} FROM fulfilment WHERE order_id = %s", (order_id,))
        .fetchone()
    )


def page(
    conn: Connection, state: str | None, deadline: str | None, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of rows, most recently changed first, and how many match in all."""
    where = " AND ".join(
        clause for clause, value in (("state = %(state)s", state), ("deadline = %(deadline)s", deadline)) if value
    )
    where = f"WHERE {where}" if where else ""
    params = {"state": state, "deadline": deadline, "offset": offset, "limit": limit}
    pg = driver(conn)
    rows = (
        pg.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_COLUMNS} FROM fulfilment {where} ORDER BY updated_at DESC, order_id"
            " OFFSET %(offset)s LIMIT %(limit)s",
            params,
        )
        .fetchall()
    )
    total = pg.execute(f"SELECT count(*) FROM fulfilment {where}", params).fetchone()
    return rows, int(total[0]) if total else 0


def counts(conn: Connection) -> dict[str, Any]:
    """Orders by state, and the payment deadlines pending and overdue (due, not yet fired)."""
    pg = driver(conn)
    by_state = dict(pg.execute("SELECT state, count(*) FROM fulfilment GROUP BY state").fetchall())
    row = pg.execute(
        "SELECT count(*), count(*) FILTER (WHERE payment_due_at < now() - interval '5 seconds'),"
        " min(payment_due_at) FROM fulfilment WHERE deadline = 'pending'"
    ).fetchone()
    pending, overdue, next_due = row if row else (0, 0, None)
    return {"states": by_state, "deadlines_pending": pending, "deadlines_overdue": overdue, "next_deadline": next_due}
