"""Inventory command handlers: load a SKU (its newest snapshot and the events after it), decide,
append, in the caller's transaction, as commands/handlers.py does for orders.

`reserve_lines`, `release_order` and `ship_order` are the building blocks the fulfilment process
manager calls with its own connection: each touches several SKU streams and appends to all of them
in one statement, each after the version it loaded (app.eventlog.store.append_streams), so an
order's lines are reserved all or none, and a SKU that moved meanwhile makes the whole call fail
with ConcurrencyError (the caller retries on a fresh transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union, assert_never

from sqlalchemy import Connection

from app.eventlog import snapshots
from app.eventlog import store as eventstore
from app.eventlog.envelope import RecordedEvent
from app.eventlog.events import DomainEvent, Line, inventory_stream
from commands.errors import InsufficientStock, VersionMismatch
from commands.inventory import SNAPSHOT_SCHEMA, Sku

DEFAULT_SNAPSHOT_EVERY = 100  # ORDERSTREAM_SNAPSHOT_EVERY's default (app.platform.config)


@dataclass(frozen=True)
class ReceiveStock:
    sku: str
    quantity: int
    reference: str


@dataclass(frozen=True)
class AdjustStock:
    sku: str
    quantity: int
    reason: str


StockCommand = Union[ReceiveStock, AdjustStock]


@dataclass(frozen=True)
class StockOutcome:
    """What a client needs to read its own write: the SKU's new version and the last position."""

    sku: str
    version: int
    position: int
    types: tuple[str, ...] = ()


def load_sku(conn: Connection, sku: str) -> Sku:
    """The SKU's stock: its newest snapshot of the current schema, then the events after it (the
    whole stream when there is none). Version 0: never received, untracked."""
    stream_id = inventory_stream(sku)
    snapshot = snapshots.latest(conn, stream_id, SNAPSHOT_SCHEMA)
    start = None if snapshot is None else Sku.from_snapshot(sku, snapshot.version, snapshot.state)
    history = eventstore.load(conn, stream_id, after_version=0 if snapshot is None else snapshot.version)
    return Sku.fold(sku, (e.domain_event() for e in history), start)


def decide(stock: Sku, cmd: StockCommand) -> list[DomainEvent]:
    """The SKU's decision on a command (mypy fails at assert_never for a command left unhandled)."""
    match cmd:
        case ReceiveStock():
            return stock.receive(cmd.quantity, cmd.reference)
        case AdjustStock():
            return stock.adjust(cmd.quantity, cmd.reason)
        case _:
            assert_never(cmd)


def handle(
    conn: Connection,
    cmd: StockCommand,
    metadata: dict[str, Any],
    expected_versions: frozenset[int] | None = None,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> StockOutcome:
    """Load the SKU, decide, append (in the caller's transaction). `expected_versions` are those
    If-Match named: the command applies only if the SKU is at one of them."""
    stock = load_sku(conn, cmd.sku)
    if expected_versions is not None and stock.version not in expected_versions:
        named = ", ".join(str(v) for v in sorted(expected_versions)) or "no version of it"
        raise VersionMismatch(f"SKU {cmd.sku} is at version {stock.version}, not {named}")
    recorded = _append(conn, [(stock, decide(stock, cmd))], metadata, snapshot_every)
    return StockOutcome(cmd.sku, recorded[-1].version, recorded[-1].position, tuple(e.type for e in recorded))


def reserve_lines(
    conn: Connection,
    order_id: str,
    lines: Iterable[Line],
    metadata: dict[str, Any],
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> list[RecordedEvent]:
    """Reserve every tracked line of an order, or none: InsufficientStock names every short SKU.
    Untracked SKUs are unlimited and units already reserved for the order count, so a redelivered
    request reserves once. Returns the events appended (none: nothing to reserve)."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    return hold_order(conn, order_id, wanted, (), metadata, snapshot_every).recorded


@dataclass(frozen=True)
class Holding:
    """What an order holds of each tracked SKU after `hold_order`, and the events that got it there."""

    held: dict[str, int]
    recorded: list[RecordedEvent]


def hold_order(
    conn: Connection,
    order_id: str,
    wanted: dict[str, int],
    others: Iterable[str],
    metadata: dict[str, Any],
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> Holding:
    """Bring an order's reservations in line with `wanted` (units per SKU), all or none: reserve what
    it lacks of each wanted SKU, and release whatever it holds of `others` (SKUs it may hold and no
    longer wants). InsufficientStock names every short SKU (nothing is then appended). Untracked SKUs
    are unlimited; a SKU already held as wanted is left alone, so a second call appends nothing."""
    short: dict[str, tuple[int, int]] = {}
    changes: list[tuple[Sku, list[DomainEvent]]] = []
    for sku in sorted(set(wanted) | set(others)):
        stock = load_sku(conn, sku)
        try:
            changes.append((stock, stock.reserve(order_id, wanted[sku]) if sku in wanted else stock.release(order_id)))
        except InsufficientStock as exc:
            short.update(exc.short)
    if short:
        raise InsufficientStock.of(short)
    recorded = _append(conn, changes, metadata, snapshot_every)
    held = {stock.sku: stock.reservations[order_id] for stock, _events in changes if order_id in stock.reservations}
    return Holding(held, recorded)


def release_order(
    conn: Connection,
    order_id: str,
    skus: Iterable[str],
    metadata: dict[str, Any],
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> list[RecordedEvent]:
    """Give back exactly what the order reserved of each SKU (those it reserved nothing of: no-op)."""
    return _each(conn, skus, lambda stock: stock.release(order_id), metadata, snapshot_every)


def ship_order(
    conn: Connection,
    order_id: str,
    skus: Iterable[str],
    metadata: dict[str, Any],
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> list[RecordedEvent]:
    """The order's reserved units of each SKU leave the stock (on hand and reserved both fall)."""
    return _each(conn, skus, lambda stock: stock.ship(order_id), metadata, snapshot_every)


def _each(
    conn: Connection,
    skus: Iterable[str],
    decision: Callable[[Sku], list[DomainEvent]],
    metadata: dict[str, Any],
    every: int,
) -> list[RecordedEvent]:
    """One decision on each SKU, appended to all of their streams at once."""
    stocks = [load_sku(conn, sku) for sku in sorted(set(skus))]
    return _append(conn, [(stock, decision(stock)) for stock in stocks], metadata, every)


def _append(
    conn: Connection, changes: Sequence[tuple[Sku, list[DomainEvent]]], metadata: dict[str, Any], every: int
) -> list[RecordedEvent]:
    """Append each SKU's events after the version it was loaded at, all in one statement, then
    snapshot the SKUs whose stream crossed a multiple of `every` (same transaction)."""
    changes = [(stock, events) for stock, events in changes if events]
    appends = [(inventory_stream(stock.sku), stock.version, events) for stock, events in changes]
    recorded = eventstore.append_streams(conn, appends, metadata)
    for stock, events in changes:
        before = stock.version
        for event in events:
            stock.apply(event)
        if snapshots.crossed(before, stock.version, every):
            snapshots.save(conn, inventory_stream(stock.sku), stock.version, SNAPSHOT_SCHEMA, stock.snapshot())
    return recorded
