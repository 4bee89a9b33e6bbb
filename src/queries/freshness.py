"""Read your writes, once for every read model: wait (bounded) until a projection shows at least the
version a command answered with. GET /orders/{id} and GET /inventory/{sku} both read through here."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask_smorest import abort
from sqlalchemy import Connection

from app.platform.db import autocommit
from app.platform.web import engine, settings, waiting_slot

Read = Callable[[Connection], dict[str, Any] | None]  # one row as the endpoint shows it (with "version")


class NotYetProjected(Exception):
    """The projection has not reached the version the client asked for within the wait."""

    def __init__(self, what: str, wanted: int, projected: int) -> None:
        super().__init__(f"{what} is projected up to version {projected}, not yet {wanted}")
        self.wanted, self.projected = wanted, projected


def read_at_least(read: Read, what: str, min_version: int | None, wait_ms: int) -> dict[str, Any] | None:
    """The row once the projection has at least `min_version` of it, polling for up to wait_ms."""
    deadline, delay = time.monotonic() + wait_ms / 1000, 0.002
    while True:
        with autocommit(engine()) as conn:  # one statement: no BEGIN/ROLLBACK round trips
            row = read(conn)
        if min_version is None or (row is not None and row["version"] >= min_version):
            return row
        if time.monotonic() + delay > deadline:
            raise NotYetProjected(what, min_version, row["version"] if row else 0)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def fresh_enough(read: Read, what: str, min_version: int | None) -> dict[str, Any] | None:
    """Read your writes, at a bounded cost. A read looks once; only one that must wait for the
    projection to reach min_version takes one of the process's few waiting slots, and holds its
    thread for up to ORDERSTREAM_READ_WAIT_MS. When all are taken, it answers 409 at once."""
    try:
        return read_at_least(read, what, min_version, 0)
    except NotYetProjected as first_look:
        behind = first_look
    with waiting_slot() as may_wait:
        try:
            if may_wait:
                return read_at_least(read, what, min_version, settings().read_wait_ms)
        except NotYetProjected as exc:
            behind = exc
    extensions = {"wanted_version": behind.wanted, "projected_version": behind.projected}
    detail = str(behind) if may_wait else f"{behind} (too many reads are waiting now: this one did not wait)"
    abort(409, message=detail, headers={"Retry-After": "1"}, extensions=extensions)
    raise AssertionError("abort raises")
