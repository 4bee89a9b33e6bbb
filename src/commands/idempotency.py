"""Idempotency keys: a retried command returns its first response and appends nothing.

The key row is inserted in the command's own transaction, before the command runs, and completed
with the response before commit. A second request with the same key waits on the row's unique
index until the first commits (then it replays the stored response) or rolls back (then it runs).
So two requests in flight with one key execute once. Keys are scoped to the principal (the token's
identity, never its display name) and
expire after ORDERSTREAM_IDEMPOTENCY_TTL_S; only successful responses are kept (a refused command
wrote nothing, so retrying it is safe).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from app.platform.db import driver

KEY_PATTERN = r"[\x21-\x7e]{1,255}"
KEY = re.compile(KEY_PATTERN)


class KeyReused(Exception):
    """The key was used before with a different request (HTTP 422)."""


class InvalidKey(ValueError):
    """The header is not 1-255 printable ASCII characters (HTTP 400)."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same: method, path and the JSON body (key order ignored)."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))  # JSON values only
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(conn: Connection, principal: str, key: str, print_: str, ttl_s: int) -> StoredResponse | None:
    """Take the key for this request, or return the response stored for it.

    One statement takes a free key or an expired one; the row stays invisible to others until this
    transaction commits (`complete` fills it in), and a request with the same key waits on it.
    """
    if KEY.fullmatch(key) is None:
        raise InvalidKey("Idempotency-Key must be 1-255 printable ASCII characters")
    pg = driver(conn)
    params = {"a": principal, "k": key, "f": print_, "ttl": ttl_s}
    if pg.execute(_CLAIM, params).fetchone():
        return None
    row = pg.execute(_STORED, params).fetchone()
    assert row is not None  # the claim found it: keys are deleted only once expired, and this one was not
    fingerprint, status, body, headers = row
    if fingerprint != print_:
        raise KeyReused(f"Idempotency-Key {key!r} was already used for a different request")
    return StoredResponse(status, body, headers)


_CLAIM = """
    INSERT INTO idempotency_keys (principal, key, fingerprint, status, body, headers, expires_at)
    VALUES (%(a)s, %(k)s, %(f)s, 0, '{}', '{}', now() + make_interval(secs => %(ttl)s))
    ON CONFLICT (principal, key) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint, status = 0, body = '{}', headers = '{}',
            expires_at = EXCLUDED.expires_at
        WHERE idempotency_keys.expires_at < now()
    RETURNING key
"""
_STORED = "SELECT fingerprint, status, body, headers FROM idempotency_keys WHERE principal = %(a)s AND key = %(k)s"
_COMPLETE = """
    UPDATE idempotency_keys SET status = %(s)s, body = %(b)s::jsonb, headers = %(h)s::jsonb
    WHERE principal = %(a)s AND key = %(k)s
"""


def complete(conn: Connection, principal: str, key: str, response: StoredResponse) -> None:
    """Record the response the command produced (same transaction as its events; not waited for)."""
    driver(conn).execute(
        _COMPLETE,
        {
            "s": response.status,
            "b": json.dumps(response.body),
            "h": json.dumps(response.headers),
            "a": principal,
            "k": key,
        },
    )


def purge_expired(conn: Connection, limit: int = 1000) -> int:
    """Delete up to `limit` expired keys; returns how many. An expired key is free to claim anyway:
    this only keeps the table small (an upkeep job calls it, workers/upkeep.py).

    The rows are locked as they are chosen, skipping locked ones: a key that a request is taking
    again right now is left alone (it will not be expired once that commits), and two purges at once
    take different rows instead of waiting for each other."""
    return conn.execute(
        text(
            "DELETE FROM idempotency_keys WHERE (principal, key) IN (SELECT principal, key FROM idempotency_keys"
            " WHERE expires_at < now() LIMIT :n FOR UPDATE SKIP LOCKED)"
        ),
        {"n": limit},
    ).rowcount
