"""The fulfilment table: the process manager's state per order, and its payment deadline.

Written only here, by the process manager's reactions and by the deadline job, each under the row's
lock (SELECT ... FOR UPDATE): a reaction and a firing for one order never interleave, and a deadline
marked fired stays fired. Read by GET /orders/{id} and the admin API (queries/fulfilment.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from app.platform.db import driver

RESERVED, REJECTED, RELEASED, SHIPPED = "reserved", "rejected", "released", "shipped"
PENDING, MET, CANCELLED, FIRED = "pending", "met", "cancelled", "fired"  # a payment deadline's states


@dataclass(frozen=True)
class Fulfilment:
    """One order's row."""

    order_id: str
    state: str
    reserved: dict[str, int]  # units held, by SKU
    short: list[dict[str, Any]] | None
    payment_due_at: datetime | None
    deadline: str | None
    order_version: int


def lock(conn: Connection, order_id: str) -> Fulfilment | None:
    """The order's row, locked until the transaction ends (None: the process manager never reacted)."""
    row = (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            "SELECT order_id::text AS order_id, state, reserved, short, payment_due_at, deadline, order_version"
            " FROM fulfilment WHERE order_id = %s FOR UPDATE",
            (order_id,),
        )
        .fetchone()
    )
    if row is None:
        return None
    row["reserved"] = {line["sku"]: line["quantity"] for line in row["reserved"]}
    return Fulfilment(**row)


def save(conn: Connection, f: Fulfilment, at: datetime) -> None:
    driver(conn).execute(
        "INSERT INTO fulfilment (order_id, state, reserved, short, payment_due_at, deadline, order_version, updated_at)"
        " VALUES (%(order_id)s, %(state)s, %(reserved)s, %(short)s, %(payment_due_at)s, %(deadline)s,"
        " %(order_version)s, %(at)s)"
        " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, reserved = excluded.reserved,"
        " short = excluded.short, payment_due_at = excluded.payment_due_at, deadline = excluded.deadline,"
        " order_version = excluded.order_version, updated_at = excluded.updated_at",
        {
            "order_id": f.order_id,
            "state": f.state,
            "reserved": Jsonb([{"sku": sku, "quantity": n} for sku, n in sorted(f.reserved.items())]),
            "short": None if f.short is None else Jsonb(f.short),
            "payment_due_at": f.payment_due_at,
            "deadline": f.deadline,
            "order_version": f.order_version,
            "at": at,
        },
    )


def lock_due(conn: Connection, limit: int) -> list[str]:
    """Orders whose payment deadline is due and pending, locked; those a reaction or another firing
    holds are skipped (they are looked at again on the next tick)."""
    rows = driver(conn).execute(
        "SELECT order_id::text FROM fulfilment WHERE deadline = 'pending' AND payment_due_at <= now()"
        " ORDER BY payment_due_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    )
    return [order_id for (order_id,) in rows.fetchall()]


def settle_deadline(conn: Connection, order_id: str, deadline: str) -> None:
    """Mark a locked row's deadline (its state follows when the process manager meets the cancellation)."""
    driver(conn).execute(
        "UPDATE fulfilment SET deadline = %s, updated_at = now() WHERE order_id = %s",
        (deadline, order_id),
    )
