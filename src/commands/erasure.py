"""Erasing a customer's personal data: destroy its data keys, record CustomerDataErased (in one
transaction), then reclaim the dead row versions that held the wrapped keys.

Idempotent: an erasure that finds no live key destroys nothing and records nothing; the answer says
when the data was first erased and by whom. The event holds no personal data: the customer id and
the ids of the keys destroyed (so an erasure can be applied again to a database restored from a
backup taken before it: `orderstream keys reapply-erasures`).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from app.eventlog import keys
from app.eventlog import store as eventstore
from app.eventlog.events import CustomerDataErased, customer_stream
from app.eventlog.store import ConcurrencyError
from app.platform.db import autocommit

log = logging.getLogger(__name__)


@retry(retry=retry_if_exception_type(ConcurrencyError), stop=stop_after_attempt(5), reraise=True)
def erase_personal_data(engine: Engine, customer_id: str, metadata: dict[str, Any]) -> keys.Erasure:
    with engine.begin() as conn:
        erasure = keys.erase(conn, customer_id, str(metadata.get("actor")))
        if erasure.key_ids:
            stream = customer_stream(customer_id)
            version = len(eventstore.load(conn, stream))
            eventstore.append(conn, stream, version, [CustomerDataErased(customer_id, erasure.key_ids)], metadata)
    if erasure.key_ids:
        try:  # best effort: the erasure stands; autovacuum reclaims the rows later if this cannot now
            with autocommit(engine) as conn:
                keys.vacuum(conn)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("erased %s, but could not vacuum data_keys now: %s", customer_id, exc)
    return erasure


def reapply_erasures(conn: Connection, actor: str) -> int:
    """Destroy again every key an erasure in the log destroyed (after a restore); returns how many
    were still there."""
    erased = [e.domain_event() for e in eventstore.of_type(conn, "CustomerDataErased")]
    return keys.destroy(
        conn, (key_id for e in erased if isinstance(e, CustomerDataErased) for key_id in e.key_ids), actor
    )
