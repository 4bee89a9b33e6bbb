"""Batches of any size: a projection folds the log into the same rows whether it meets the events one
at a time, in batches cut anywhere (out of order, redelivered, with gaps filled from the event
store), or all at once as a rebuild does. Against real PostgreSQL; every run is rolled back."""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from app.eventlog import store as eventstore
from app.eventlog.codec import to_payload
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import (
    SCHEMA_VERSIONS,
    Event,
    ItemAdded,
    ItemRemoved,
    Line,
    OrderCancelled,
    OrderCreated,
    OrderDelivered,
    PaymentProcessed,
    ProductShipped,
)
from app.eventlog.streams import encode_entry, stream_key_for
from queries.order_summaries import ORDER_SUMMARIES
from queries.projections import PROJECTIONS
from tests.support import META, Env, rebuilt, snapshot
from workers.checkpoints import apply_batch
from workers.consumer import ConsumerGroupRunner
from workers.replay import Progress, replay

TABLES = {
    "order_summaries": "SELECT * FROM order_summaries ORDER BY order_id",
    "order_items": "SELECT * FROM order_items ORDER BY order_id, sku",
    "sales_orders": "SELECT * FROM sales_orders ORDER BY order_id",
    "sales_daily": "SELECT * FROM sales_daily ORDER BY day, currency",
    "customer_stats": "SELECT * FROM customer_stats ORDER BY customer_id, currency",
    "projection_checkpoints": "SELECT * FROM projection_checkpoints ORDER BY projection, stream_id",
}


def append(env: Env, order_id: str, *events: Event) -> None:
    """Each event in a transaction of its own (so each has its own recorded time)."""
    for event in events:
        with env.engine.begin() as conn:
            version = conn.execute(
                text("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = :s"), {"s": order_id}
            ).scalar_one()
            eventstore.append(conn, order_id, version, [event], META)


def shipped_v1(env: Env, order_id: str) -> None:
    """A ProductShipped stored at schema version 1 (no service level: upcast to "standard")."""
    payload = {"order_id": order_id, "carrier": "DHL", "tracking_number": "T-1"}
    with env.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata)"
                " SELECT gen_random_uuid(), :s, max(version) + 1, 'ProductShipped', 1, CAST(:p AS jsonb), '{}'"
                " FROM events WHERE stream_id = :s"
            ),
            {"s": order_id, "p": json.dumps(payload)},
        )


def a_log(env: Env) -> dict[str, str]:
    """Orders that take every path of both projectors; returns their ids by name."""
    ids = {name: str(uuid.uuid4()) for name in ("shipped", "refunded", "cancelled", "edited", "yen")}
    o = ids["shipped"]
    lines = (Line("A", 2, Decimal("9.99")), Line("B", 1, Decimal("0.5")))
    append(env, o, OrderCreated(o, "c-1", "EUR", lines), ItemAdded(o, "A", 1, Decimal("9.990")))
    append(env, o, ItemAdded(o, "C", 3, Decimal("1.25")), ItemRemoved(o, "B"))
    append(env, o, PaymentProcessed(o, Decimal("33.72"), "p-1"))
    shipped_v1(env, o)
    append(env, o, OrderDelivered(o))
    o = ids["refunded"]
    append(env, o, OrderCreated(o, "c-1", "EUR", (Line("A", 1, Decimal("19.98")),)))
    append(env, o, PaymentProcessed(o, Decimal("19.98"), "p-2"), OrderCancelled(o, "changed mind", Decimal("19.98")))
    o = ids["cancelled"]
    append(env, o, OrderCreated(o, "c-1", "EUR", (Line("A", 1, Decimal("5")),)), OrderCancelled(o, "late", None))
    o = ids["edited"]
    append(env, o, OrderCreated(o, "c-2", "EUR", ()), ItemAdded(o, "X", 1, Decimal("2.00")))
    append(env, o, ItemAdded(o, "X", 4, Decimal("2.50")), ItemRemoved(o, "missing"), ItemRemoved(o, "X"))
    o = ids["yen"]
    append(env, o, OrderCreated(o, "c-1", "JPY", (Line("A", 2, Decimal("999")),)))
    append(env, o, PaymentProcessed(o, Decimal("1998"), "p-3"))
    return ids


def the_log(env: Env) -> list[RecordedEvent]:
    with env.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT event_id::text, stream_id, version, position, type, schema_version, payload, metadata,"
                " recorded_at FROM events ORDER BY position"
            )
        ).mappings()
        return [RecordedEvent(**row) for row in rows]


def applied(env: Env, batches: list[list[RecordedEvent]]) -> dict[str, list[dict[str, Any]]]:
    """Both projections' rows after applying the batches one after the other (all rolled back after)."""
    with env.engine.connect() as conn, conn.begin() as tx:
        rows = applied_on(conn, batches)
        tx.rollback()
    return rows


def applied_on(conn: Connection, batches: list[list[RecordedEvent]]) -> dict[str, list[dict[str, Any]]]:
    """applied() inside the caller's transaction, undone after (a savepoint)."""
    with conn.begin_nested() as savepoint:
        for batch in batches:
            for projection in PROJECTIONS.values():
                apply_batch(conn, projection, batch)
        rows = tables(conn)
        savepoint.rollback()
    return rows


def tables(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(r) for r in conn.execute(text(sql)).mappings()] for table, sql in TABLES.items()}


def test_a_batch_of_new_and_known_orders_duplicates_and_gaps_gives_the_rows_of_batches_of_one(fresh_env: Env) -> None:
    ids = a_log(fresh_env)
    log = the_log(fresh_env)
    first = [e for e in log if e.stream_id != ids["yen"] and e.version <= 2]  # these orders exist afterwards
    gap = next(e for e in log if e.stream_id == ids["shipped"] and e.version == 4)  # read from the log instead
    rest = [e for e in log if e not in first and e != gap]
    second = rest + random.sample([e for e in log if e != gap], 8)  # redeliveries, of either batch
    random.shuffle(second)

    reference = applied(fresh_env, [[event] for event in log])  # one event at a time, in log order
    assert applied(fresh_env, [first, second]) == reference
    assert applied(fresh_env, [log]) == reference  # one batch: a rebuild's view

    summaries = {r["order_id"]: r for r in reference["order_summaries"]}
    shipped = summaries[uuid.UUID(ids["shipped"])]
    assert (shipped["status"], shipped["total"], shipped["service_level"]) == (
        "delivered",
        Decimal("33.72"),
        "standard",
    )
    last = [e for e in log if e.stream_id == ids["shipped"]][-1]
    assert (shipped["version"], shipped["last_position"], shipped["updated_at"]) == (7, last.position, last.recorded_at)
    assert summaries[uuid.UUID(ids["edited"])]["total"] == 0
    stats = {(r["customer_id"], r["currency"]): r for r in reference["customer_stats"]}
    created = [e.recorded_at for e in log if e.type == "OrderCreated" and e.payload["customer_id"] == "c-1"]
    eur = stats[("c-1", "EUR")]
    assert (eur["orders"], eur["paid_orders"], eur["lifetime_value"]) == (3, 2, Decimal("33.72"))
    assert (eur["first_order_at"], eur["last_order_at"]) == (min(created[:3]), max(created[:3]))
    checkpoints = {(r["projection"], r["stream_id"]): r["version"] for r in reference["projection_checkpoints"]}
    assert checkpoints == {(p, e.stream_id): e.version for p in PROJECTIONS for e in log}  # the last version wins


MONEY = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
SKUS = st.sampled_from("ABC")


@st.composite
def an_order(draw: st.DrawFn) -> list[Event]:
    """An order's events: created, then anything (a projection does not check the transitions)."""
    o = str(uuid.uuid4())
    skus = draw(st.lists(SKUS, unique=True, max_size=2))
    lines = tuple(Line(sku, draw(st.integers(1, 5)), draw(MONEY)) for sku in skus)
    later = st.one_of(
        st.builds(ItemAdded, st.just(o), SKUS, st.integers(1, 5), MONEY),
        st.builds(ItemRemoved, st.just(o), SKUS),
        st.builds(PaymentProcessed, st.just(o), MONEY, st.just("p")),
        st.builds(ProductShipped, st.just(o), st.just("DHL"), st.just("T-1"), st.sampled_from(["standard", "express"])),
        st.builds(OrderDelivered, st.just(o)),
        st.builds(OrderCancelled, st.just(o), st.just("r"), st.none() | MONEY),
    )
    created = OrderCreated(o, draw(st.sampled_from(["c-1", "c-2"])), draw(st.sampled_from(["EUR", "JPY"])), lines)
    return [created, *draw(st.lists(later, max_size=6))]


@st.composite
def a_log_and_its_delivery(draw: st.DrawFn) -> tuple[list[Event], list[int], list[list[int]]]:
    """Orders interleaved into one log, minutes between its events (so they span days), and a delivery
    of it in batches: each event in any batch, in any order within it, some delivered twice."""
    orders = draw(st.lists(an_order(), min_size=1, max_size=4))
    turns = draw(st.permutations([n for n, order in enumerate(orders) for _ in order]))
    queues = [iter(order) for order in orders]
    log = [next(queues[n]) for n in turns]
    minutes = draw(st.lists(st.integers(0, 1500), min_size=len(log), max_size=len(log)))
    count = draw(st.integers(1, len(log)))
    batches: list[list[int]] = [[] for _ in range(count)]
    for index in range(len(log)):
        batches[draw(st.integers(0, count - 1))].append(index)
    for index in draw(st.lists(st.integers(0, len(log) - 1), max_size=5)):  # redeliveries
        batches[draw(st.integers(0, count - 1))].append(index)
    return log, minutes, [draw(st.permutations(batch)) for batch in batches]


def recorded(conn: Connection, log: list[Event], minutes: list[int]) -> list[RecordedEvent]:
    """The log appended to the event store (inside the caller's transaction), with these times."""
    at, versions, positions = datetime(2026, 1, 1, tzinfo=UTC), dict[str, int](), []
    for event, gap in zip(log, minutes, strict=True):
        at += timedelta(minutes=gap)
        versions[event.order_id] = versions.get(event.order_id, 0) + 1
        kind = type(event).__name__
        positions += conn.execute(
            text(
                "INSERT INTO events (event_id, stream_id, version, type, schema_version, payload, metadata,"
                " recorded_at) VALUES (gen_random_uuid(), :s, :v, :t, :sv, CAST(:p AS jsonb), '{}', :at)"
                " RETURNING position"
            ),
            {"s": event.order_id, "v": versions[event.order_id], "t": kind, "sv": SCHEMA_VERSIONS[kind],
             "p": json.dumps(to_payload(event)), "at": at},
        ).scalars().all()  # fmt: skip
    wanted = set(positions)
    read = eventstore.read_events(conn, min(positions) - 1, max(positions) - min(positions) + 1)
    return [event for event in read if event.position in wanted]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=a_log_and_its_delivery())
def test_any_delivery_in_batches_gives_the_rows_of_batches_of_one_and_of_a_rebuild(
    env: Env, drawn: tuple[list[Event], list[int], list[list[int]]]
) -> None:
    log_events, minutes, delivery = drawn
    with env.engine.connect() as conn, conn.begin() as tx:
        log = recorded(conn, log_events, minutes)
        one_at_a_time = applied_on(conn, [[event] for event in log])
        rebuild = applied_on(conn, [log])
        delivered = applied_on(conn, [[log[index] for index in batch] for batch in delivery if batch])
        tx.rollback()
    assert delivered == one_at_a_time
    assert rebuild == one_at_a_time
    assert len(one_at_a_time["order_summaries"]) == len({e.order_id for e in log_events})


def test_a_replay_in_small_batches_gives_the_rows_of_a_rebuild(fresh_env: Env) -> None:
    a_log(fresh_env)
    events = len(the_log(fresh_env))
    progress = replay(fresh_env.engine, ORDER_SUMMARIES, Progress(total=events), batch_size=4)
    assert progress.done == events
    assert snapshot(fresh_env) == rebuilt(fresh_env)


def test_a_replay_hands_a_poison_event_to_on_poison_and_applies_the_rest(fresh_env: Env) -> None:
    """The catch-up of a new projection: a batch that fails is applied event by event, and only the
    event that fails alone is handed on (while the replay reads the next batches ahead)."""
    env = fresh_env
    a_log(env)
    poison = str(uuid.uuid4())
    append(env, poison, OrderCreated(poison, "poison-1", "EUR", ()))
    a_log(env)
    events = len(the_log(env))
    with env.engine.begin() as conn:  # a projector bug, simulated: the rows of one customer violate it
        conn.execute(text("ALTER TABLE order_summaries ADD CONSTRAINT simulated_bug CHECK (customer_id <> 'poison-1')"))
    failed: list[tuple[str, int, str]] = []
    progress = replay(
        env.engine, ORDER_SUMMARIES, Progress(total=events), batch_size=4,
        on_poison=lambda event, exc: failed.append((event.stream_id, event.version, str(exc))),
    )  # fmt: skip
    assert progress.done == events and progress.last_position == the_log(env)[-1].position
    assert [(stream_id, version) for stream_id, version, _ in failed] == [(poison, 1)]
    assert "simulated_bug" in failed[0][2]
    with env.engine.begin() as conn:
        conn.execute(text("ALTER TABLE order_summaries DROP CONSTRAINT simulated_bug"))
    live = snapshot(env)
    assert poison not in {str(row["order_id"]) for row in live["order_summaries"]}
    expected = rebuilt(env)
    expected["order_summaries"] = [r for r in expected["order_summaries"] if str(r["order_id"]) != poison]
    expected["projection_checkpoints"] = [r for r in expected["projection_checkpoints"] if r["stream_id"] != poison]
    assert live == expected


def test_the_replay_reads_the_envelopes_the_event_store_loads(fresh_env: Env) -> None:
    ids = a_log(fresh_env)
    with fresh_env.engine.connect() as conn:
        read = eventstore.read_events(conn, 0, 1000)
        loaded = [e for order_id in ids.values() for e in eventstore.load(conn, order_id)]
    assert read == sorted(loaded, key=lambda e: e.position)
    assert read[0] == RecordedEvent(**{f: getattr(read[0], f) for f in read[0].__dataclass_fields__})


def test_a_poison_event_in_a_batch_is_dead_lettered_alone_the_rest_is_applied(fresh_env: Env) -> None:
    env = fresh_env
    ids = a_log(env)
    poison = str(uuid.uuid4())
    append(env, poison, OrderCreated(poison, "poison-1", "EUR", ()))
    log = the_log(env)
    with env.engine.begin() as conn:  # a projector bug, simulated: the rows of one customer violate it
        conn.execute(text("ALTER TABLE order_summaries ADD CONSTRAINT simulated_bug CHECK (customer_id <> 'poison-1')"))
        conn.execute(text("INSERT INTO projection_catchups (projection) VALUES ('order_summaries')"))
    settings = replace(env.settings, max_deliveries=1)  # dead-letter at the first failure
    runner = ConsumerGroupRunner(
        settings, PROJECTIONS["order_summaries"], env.engine, env.redis, "c1", threading.Event()
    )
    runner.ensure_groups()
    for event in log + log[:5]:  # with duplicates
        key = stream_key_for(settings.key_prefix, settings.stream_partitions, event.stream_id)
        env.redis.xadd(key, encode_entry(event))  # type: ignore[arg-type]
    while runner.step():
        pass

    letters = env.rows("SELECT stream_id, version, error FROM dead_letters")
    assert [(r["stream_id"], r["version"]) for r in letters] == [(poison, 1)]
    assert "simulated_bug" in letters[0]["error"]
    healthy = [e for e in log if e.stream_id != poison]
    with env.engine.connect() as conn, conn.begin() as tx:
        live = {t: rows for t, rows in tables(conn).items() if t in ("order_summaries", "order_items")}
        conn.execute(text("DELETE FROM order_items; DELETE FROM order_summaries; DELETE FROM projection_checkpoints"))
        for event in healthy:  # one at a time
            apply_batch(conn, PROJECTIONS["order_summaries"], [event])
        reference = {t: rows for t, rows in tables(conn).items() if t in ("order_summaries", "order_items")}
        tx.rollback()
    assert live == reference and len(live["order_summaries"]) == len(ids)
    pending = sum(
        int(env.redis.xpending(f"{settings.key_prefix}:events:{n}", "order_summaries")["pending"])
        for n in range(settings.stream_partitions)
    )
    assert pending == 0
