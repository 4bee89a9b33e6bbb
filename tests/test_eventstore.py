"""The event store on real PostgreSQL: append-only, optimistic concurrency, every event in the outbox."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from app.eventlog import store as eventstore
from app.eventlog.events import ItemAdded
from tests.support import META, Env, created


def test_append_then_load_gives_the_envelopes_back(env: Env) -> None:
    order_id = str(uuid.uuid4())
    with env.engine.begin() as conn:
        first = eventstore.append(conn, order_id, 0, [created(order_id)], META)
        second = eventstore.append(conn, order_id, 1, [ItemAdded(order_id, "B", 2, Decimal("0.50"))], META)
    with env.engine.connect() as conn:
        loaded = eventstore.load(conn, order_id)
    assert loaded == first + second
    assert [e.version for e in loaded] == [1, 2]
    assert loaded[0].position < loaded[1].position
    assert loaded[1].payload == {"order_id": order_id, "sku": "B", "quantity": 2, "unit_price": "0.50"}
    assert loaded[1].metadata == META and loaded[1].schema_version == 1
    assert loaded[1].domain_event() == ItemAdded(order_id, "B", 2, Decimal("0.50"))


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET type = 'Tampered'", "DELETE FROM events", "TRUNCATE events CASCADE"],
)
def test_the_database_refuses_to_change_or_delete_events(env: Env, statement: str) -> None:
    order_id = str(uuid.uuid4())
    with env.engine.begin() as conn:
        eventstore.append(conn, order_id, 0, [created(order_id)], META)
    before = env.scalar("SELECT count(*) FROM events")
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), env.engine.begin() as conn:
        conn.execute(text(statement))
    assert env.scalar("SELECT count(*) FROM events") == before
    assert env.scalar("SELECT type FROM events WHERE stream_id = :s", s=order_id) == "OrderCreated"


def test_every_appended_event_is_in_the_outbox_in_the_same_transaction(env: Env) -> None:
    order_id = str(uuid.uuid4())
    with env.engine.begin() as conn:
        recorded = eventstore.append(conn, order_id, 0, [created(order_id)], META)
        assert (
            conn.execute(text("SELECT count(*) FROM outbox WHERE position = :p"), {"p": recorded[0].position}).scalar()
            == 1
        )
    failed_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), env.engine.begin() as conn:
        eventstore.append(conn, failed_id, 0, [created(failed_id)], META)
        raise RuntimeError("the command fails after appending")
    assert env.scalar("SELECT count(*) FROM events WHERE stream_id = :s", s=failed_id) == 0


def test_racing_appends_to_one_order_exactly_one_wins(env: Env) -> None:
    order_id = str(uuid.uuid4())
    with env.engine.begin() as conn:
        eventstore.append(conn, order_id, 0, [created(order_id)], META)
    writers = 8
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            with env.engine.begin() as conn:
                eventstore.append(conn, order_id, 1, [ItemAdded(order_id, f"S{n}", 1, Decimal(1))], META)
            outcomes.append("won")
        except eventstore.ConcurrencyError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * (writers - 1) + ["won"]
    assert env.scalar("SELECT max(version) FROM events WHERE stream_id = :s", s=order_id) == 2
