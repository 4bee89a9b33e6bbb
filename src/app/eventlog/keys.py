"""Customers' data keys, kept in PostgreSQL (`data_keys`), wrapped under the master key.

The one module with SQL on `data_keys`. A key is created with a customer's first personal data,
wrapped under the current master key (ORDERSTREAM_MASTER_KEY); after a rotation, keys wrapped under a
previous master key (ORDERSTREAM_PREVIOUS_MASTER_KEYS) still open until `orderstream keys rotate`
re-wraps them. Erasure destroys every key of the customer: the wrapped bytes are overwritten with
NULL in the erasing transaction, and the customer's next personal data gets a new key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Connection

from app.eventlog.codec import Sealer
from app.eventlog.events import PersonalData, Sealed
from app.eventlog.personal import MasterKey, Unreadable, new_data_key, seal, unseal
from app.platform.config import Settings
from app.platform.db import driver


class MasterKeyMissing(RuntimeError):
    """No ORDERSTREAM_MASTER_KEY: personal data could be neither sealed nor opened."""


class MasterKeyUnknown(Unreadable):
    """A data key is wrapped under a master key that is neither the current nor a previous one."""


@dataclass(frozen=True)
class Erasure:
    customer_id: str
    key_ids: tuple[str, ...]  # the keys destroyed by this call (none: erased before, or never held)
    erased_at: datetime | None  # when its data was first erased (None: it never had any)
    erased_by: str | None


@dataclass(frozen=True)
class Keyring:
    master: MasterKey
    previous: tuple[MasterKey, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        if not settings.master_key:
            raise MasterKeyMissing(
                "ORDERSTREAM_MASTER_KEY is not set: it wraps the keys of customers' personal data. Generate one"
                " with `orderstream keys new-master-key` and keep it in a secret store (`make run` makes a"
                " development key in .data/ by itself)"
            )
        return cls(
            MasterKey.parse(settings.master_key), tuple(MasterKey.parse(k) for k in settings.previous_master_keys)
        )

    def unwrap(self, key_id: str, wrapped: bytes, master_id: str) -> bytes:
        """A key (or secret) wrapped under the current or a previous master key."""
        for master in (self.master, *self.previous):
            if master.id == master_id:
                return master.unwrap(key_id, wrapped)
        raise MasterKeyUnknown(f"data key {key_id} is wrapped under master key {master_id}, which is not configured")

    def sealer(self, conn: Connection) -> Sealer:
        """Seals under the customer's live data key (created in the caller's transaction if none)."""

        def sealing(subject: str, data: PersonalData) -> Sealed:
            key_id, key = self._live_key(conn, subject)
            return seal(key, key_id, subject, data)

        return sealing

    def _live_key(self, conn: Connection, customer_id: str) -> tuple[str, bytes]:
        """The customer's live key, held FOR SHARE until the caller commits: an erasure waits for
        the data it seals to be written (and destroys it with the rest), or, if it committed first,
        the data gets a new key. Made if there is none (a concurrent first order's, if it won)."""
        pg = driver(conn)
        for _ in range(3):
            row = pg.execute(_LIVE, (customer_id,)).fetchone()
            if row is not None:
                return row[0], self.unwrap(row[0], bytes(row[1]), row[2])
            key_id, key = str(uuid.uuid4()), new_data_key()
            pg.execute(
                "INSERT INTO data_keys (key_id, customer_id, wrapped, master_key_id) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (customer_id) WHERE erased_at IS NULL DO NOTHING",
                (key_id, customer_id, self.master.wrap(key_id, key), self.master.id),
            )
        raise RuntimeError(f"no live data key for customer {customer_id} after three tries (erased meanwhile?)")

    def open_all(self, conn: Connection, sealed: Iterable[Sealed | None]) -> list[PersonalData | None]:
        """Each sealed value opened, or None where its key was destroyed (erased) or it is None.
        One query for all of them."""
        items = list(sealed)
        ids = sorted({s.key_id for s in items if s is not None})
        keys: dict[str, bytes] = {}
        if ids:
            rows = driver(conn).execute(
                "SELECT key_id::text, wrapped, master_key_id FROM data_keys"
                " WHERE key_id = ANY(%s::uuid[]) AND wrapped IS NOT NULL",
                (ids,),
            )
            keys = {key_id: self.unwrap(key_id, bytes(wrapped), master) for key_id, wrapped, master in rows}
        return [None if s is None or s.key_id not in keys else unseal(keys[s.key_id], s) for s in items]

    @staticmethod
    def destroyed(conn: Connection, key_ids: Iterable[str]) -> set[str]:
        """Which of these keys were destroyed (erased)."""
        ids = sorted(set(key_ids))
        if not ids:
            return set()
        rows = driver(conn).execute(
            "SELECT key_id::text FROM data_keys WHERE key_id = ANY(%s::uuid[]) AND wrapped IS NULL", (ids,)
        )
        return {key_id for (key_id,) in rows}

    def rotate(self, conn: Connection) -> int:
        """Re-wrap every live data key under the current master key; returns how many moved."""
        pg = driver(conn)
        rows = pg.execute(
            "SELECT key_id::text, wrapped, master_key_id FROM data_keys"
            " WHERE wrapped IS NOT NULL AND master_key_id <> %s FOR UPDATE",
            (self.master.id,),
        ).fetchall()
        pg.cursor().executemany(
            "UPDATE data_keys SET wrapped = %s, master_key_id = %s WHERE key_id = %s", self.rewrapped(rows)
        )
        return len(rows)

    def rewrapped(self, rows: Iterable[tuple[str, bytes, str]]) -> list[tuple[bytes, str, str]]:
        """Each (id, wrapped, master key id) wrapped under the current master key instead: (wrapped,
        master key id, id), the parameters of an UPDATE."""
        return [(self.master.wrap(i, self.unwrap(i, bytes(w), m)), self.master.id, i) for i, w, m in rows]


_LIVE = (
    "SELECT key_id::text, wrapped, master_key_id FROM data_keys WHERE customer_id = %s AND erased_at IS NULL FOR SHARE"
)


def erase(conn: Connection, customer_id: str, actor: str) -> Erasure:
    """Destroy every data key of the customer (idempotent: a second call destroys nothing more)."""
    destroyed = _destroy(conn, "customer_id = %s", customer_id, actor)
    first = erased(conn, customer_id)
    return Erasure(customer_id, tuple(sorted(destroyed)), *(first or (None, None)))


def erased(conn: Connection, customer_id: str) -> tuple[datetime, str] | None:
    """When, and by whom, the customer's data was first erased (None: never)."""
    row = (
        driver(conn)
        .cursor(row_factory=dict_row)
        .execute(
            "SELECT erased_at, erased_by FROM data_keys WHERE customer_id = %s AND erased_at IS NOT NULL"
            " ORDER BY erased_at LIMIT 1",
            (customer_id,),
        )
        .fetchone()
    )
    return None if row is None else (row["erased_at"], row["erased_by"])


def destroy(conn: Connection, key_ids: Iterable[str], actor: str) -> int:
    """Destroy these keys if they still exist (an erasure the log records, applied again to a
    database restored from before it); returns how many were destroyed now."""
    ids = sorted(set(key_ids))
    return len(_destroy(conn, "key_id = ANY(%s::uuid[])", ids, actor)) if ids else 0


def _destroy(conn: Connection, which: str, value: Any, actor: str) -> list[str]:
    """Overwrite the wrapped keys `which` selects that still exist; the ids destroyed."""
    rows = driver(conn).execute(
        "UPDATE data_keys SET wrapped = NULL, erased_at = now(), erased_by = %s"
        f" WHERE {which} AND erased_at IS NULL RETURNING key_id::text",
        (actor, value),
    )
    return [key_id for (key_id,) in rows.fetchall()]


def vacuum(conn: Connection) -> None:
    """Reclaim the dead row versions an erasure left (they held the wrapped keys) (autocommit only)."""
    driver(conn).execute("VACUUM data_keys")


def web_keyring() -> Keyring:
    """The keyring of the running web app (create_app makes it from the settings)."""
    from flask import current_app

    keyring: Keyring = current_app.extensions["orderstream"]["keyring"]
    return keyring
