"""The webhook_endpoints table (its one owner): register, read, change, remove an endpoint.

The signing secret is made here, returned once, and stored only wrapped under the master key
(app/eventlog/personal.py's MasterKey), so a copy of the database signs nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.eventlog.keys import Keyring
from app.platform.db import driver
from workers.webhooks.signing import new_secret

HELD = datetime(9999, 12, 31, tzinfo=UTC)  # when a held delivery is due: never (the pump's index skips it)
_COLUMNS = (
    "id::text AS id, url, event_types, description, enabled, disabled_reason, failing_since, created_at, updated_at"
)


def register(
    conn: Connection, keyring: Keyring, url: str, event_types: Sequence[str], description: str
) -> tuple[dict[str, Any], str]:
    """A new endpoint, and its secret (the only time it is seen)."""
    endpoint_id, secret = str(uuid.uuid4()), new_secret()
    row = (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            f"INSERT INTO webhook_endpoints (id, url, event_types, description, secret_wrapped, master_key_id)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (endpoint_id, url, list(event_types), description, keyring.master.wrap(endpoint_id, secret.encode()),
             keyring.master.id),
        )
        .fetchone()
    )  # fmt: skip
    assert row is not None
    return row, secret


def target(conn: Connection, keyring: Keyring, endpoint_id: str) -> tuple[str, str]:
    """Where a delivery goes and the secret it is signed with (one query per delivery)."""
    row = (
        driver(conn)
        .execute("SELECT url, secret_wrapped, master_key_id FROM webhook_endpoints WHERE id = %s", (endpoint_id,))
        .fetchone()
    )
    if row is None:
        raise LookupError(f"no webhook endpoint {endpoint_id}")
    return row[0], keyring.unwrap(endpoint_id, bytes(row[1]), row[2]).decode()


def secret_of(conn: Connection, keyring: Keyring, endpoint_id: str) -> str:
    return target(conn, keyring, endpoint_id)[1]


def rewrap(conn: Connection, keyring: Keyring) -> int:
    """Re-wrap every signing secret under the current master key (`orderstream keys rotate`)."""
    pg = driver(conn)
    rows = pg.execute(
        "SELECT id::text, secret_wrapped, master_key_id FROM webhook_endpoints WHERE master_key_id <> %s FOR UPDATE",
        (keyring.master.id,),
    ).fetchall()
    pg.cursor().executemany(
        "UPDATE webhook_endpoints SET secret_wrapped = %s, master_key_id = %s WHERE id = %s", keyring.rewrapped(rows)
    )
    return len(rows)


def find(conn: Connection, endpoint_id: str) -> dict[str, Any] | None:
    return (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = %s", (endpoint_id,))
        .fetchone()
    )


def page(conn: Connection, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    pg = driver(conn)
    rows = (
        pg.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id OFFSET %s LIMIT %s", (offset, limit)
        )
        .fetchall()
    )
    total = pg.execute("SELECT count(*) FROM webhook_endpoints").fetchone()
    return rows, int(total[0]) if total else 0


def update(conn: Connection, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    """Change url, event_types, description or enabled. Disabling holds its deliveries (none is sent,
    new ones are recorded and wait); enabling sends them, in order, and clears why it was disabled."""
    allowed = {k: v for k, v in changes.items() if k in ("url", "event_types", "description", "enabled")}
    sets = [f"{name} = %({name})s" for name in allowed]
    if allowed.get("enabled") is True:
        sets += ["disabled_reason = NULL", "failing_since = NULL"]
    sets.append("updated_at = now()")
    row = (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = %(id)s RETURNING {_COLUMNS}",
            {**allowed, "id": endpoint_id},
        )
        .fetchone()
    )
    if row is not None and "enabled" in allowed:
        hold(conn, endpoint_id, held=not allowed["enabled"])
    return row


def hold(conn: Connection, endpoint_id: str, held: bool) -> None:
    """Its waiting deliveries due never (held: due on 9999-12-31, which the pump never reaches) or now."""
    driver(conn).execute(
        "UPDATE webhook_deliveries SET next_attempt_at = CASE WHEN %s THEN %s ELSE now() END"
        " WHERE endpoint_id = %s AND status IN ('pending', 'retrying')",
        (held, HELD, endpoint_id),
    )


def remove(conn: Connection, endpoint_id: str) -> bool:
    """Delete the endpoint and its deliveries."""
    return driver(conn).execute("DELETE FROM webhook_endpoints WHERE id = %s", (endpoint_id,)).rowcount > 0


def matching(conn: Connection, event_types: Sequence[str]) -> list[dict[str, Any]]:
    """Endpoints that want any of these event types (or every type: "*"), with when they were
    registered (an endpoint hears of events recorded from then on) and whether they are enabled
    (a disabled one's deliveries are recorded held)."""
    return (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            "SELECT id::text AS id, event_types, created_at, enabled FROM webhook_endpoints"
            " WHERE event_types && %s::text[] OR '*' = ANY(event_types)",
            (list(event_types),),
        )
        .fetchall()
    )


def record_outcome(conn: Connection, endpoint_id: str, delivered: bool, summary: str, disable_after_s: float) -> None:
    """After an attempt: a success clears `failing_since`; a failure starts it, and one failing
    longer than `disable_after_s` disables the endpoint, saying why, and holds its deliveries."""
    pg = driver(conn)
    if delivered:
        pg.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = %s AND failing_since IS NOT NULL",
            (endpoint_id,),
        )
        return
    disabled = pg.execute(
        """UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now()), enabled = false,
              disabled_reason = 'disabled automatically: every delivery failed since '
                  || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                  || ' (last: ' || %(summary)s || ')',
              updated_at = now()
           WHERE id = %(id)s AND enabled AND failing_since < now() - make_interval(secs => %(after)s)""",
        {"id": endpoint_id, "after": disable_after_s, "summary": summary[:200]},
    ).rowcount
    if disabled:
        hold(conn, endpoint_id, held=True)
    else:
        pg.execute(
            "UPDATE webhook_endpoints SET failing_since = now() WHERE id = %s AND failing_since IS NULL", (endpoint_id,)
        )


def overview(conn: Connection) -> list[dict[str, Any]]:
    """Each endpoint with its deliveries counted by status (the admin page)."""
    return (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            f"""SELECT {_COLUMNS}, coalesce(c.counts, '{{}}'::jsonb) AS deliveries
                FROM webhook_endpoints
                LEFT JOIN LATERAL (SELECT jsonb_object_agg(status, n) AS counts
                                   FROM (SELECT status, count(*) AS n FROM webhook_deliveries
                                         WHERE endpoint_id = webhook_endpoints.id GROUP BY status) s) c ON true
                ORDER BY created_at, id"""
        )
        .fetchall()
    )
