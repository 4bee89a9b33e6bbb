"""Stock over HTTP and in the store (Flask test client, real PostgreSQL): the contract of receipts
and adjustments, snapshots that never change an answer, and reservations atomic across SKU streams."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection

from app.eventlog import store as eventstore
from app.eventlog.events import Line, UnitsReserved, inventory_stream
from app.eventlog.store import ConcurrencyError
from commands import stock
from commands.errors import InsufficientStock
from tests.support import Env

META = {"actor": "test"}


def receive(client: FlaskClient, sku: str, quantity: int, **headers: str) -> Any:
    return client.post(f"/inventory/{sku}/receipts", json={"quantity": quantity, "reference": "r-1"}, headers=headers)


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:12]}"


def versions(env: Env, *skus: str) -> list[int]:
    return [int(env.scalar("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = :s",
                           s=inventory_stream(sku))) for sku in skus]  # fmt: skip


def lines(*pairs: tuple[str, int]) -> list[Line]:
    return [Line(sku, quantity, Decimal("1.00")) for sku, quantity in pairs]


# --- HTTP contract ------------------------------------------------------------------------------


def test_a_receipt_answers_201_with_version_position_location_and_etag(client: FlaskClient, env: Env) -> None:
    sku = new_sku()
    response = receive(client, sku, 10)
    assert response.status_code == 201, response.json
    assert set(response.json) == {"sku", "version", "position"}
    assert (response.json["sku"], response.json["version"]) == (sku, 1)
    assert response.headers["Location"] == f"/inventory/{sku}"
    assert response.headers["ETag"] == '"1"'
    stored = env.rows("SELECT type, payload FROM events WHERE stream_id = :s", s=inventory_stream(sku))
    assert stored == [{"type": "StockReceived", "payload": {"sku": sku, "quantity": 10, "reference": "r-1"}}]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("receipts", {"quantity": 0, "reference": "r"}, "quantity"),
        ("receipts", {"quantity": -1, "reference": "r"}, "quantity"),
        ("receipts", {"quantity": 1.5, "reference": "r"}, "quantity"),
        ("receipts", {"quantity": "2", "reference": "r"}, "quantity"),
        ("receipts", {"quantity": 2}, "reference"),
        ("receipts", {"quantity": 2, "reference": "r", "unexpected": 1}, "unexpected"),
        ("adjustments", {"quantity": 0, "reason": "r"}, "quantity"),
        ("adjustments", {"quantity": 10**7, "reason": "r"}, "quantity"),
        ("adjustments", {"quantity": -1, "reason": ""}, "reason"),
    ],
)
def test_invalid_stock_commands_get_422_naming_the_field_and_append_nothing(
    client: FlaskClient, env: Env, path: str, body: dict[str, Any], field: str
) -> None:
    sku = new_sku()
    receive(client, sku, 5)
    response = client.post(f"/inventory/{sku}/{path}", json=body)
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"]["json"]
    assert versions(env, sku) == [1]


def test_a_path_that_cannot_name_a_sku_is_404(client: FlaskClient) -> None:
    response = client.post("/inventory/-bad/receipts", json={"quantity": 1, "reference": "r"})
    assert response.status_code == 404
    assert client.get(f"/inventory/{'A' * 65}").status_code == 404


def test_adjusting_below_reserved_is_409_and_an_untracked_sku_404(client: FlaskClient, env: Env) -> None:
    sku = new_sku()
    receive(client, sku, 5)
    with env.engine.begin() as conn:
        stock.reserve_lines(conn, "order-1", lines((sku, 3)), META)
    refused = client.post(f"/inventory/{sku}/adjustments", json={"quantity": -3, "reason": "stocktake"})
    assert refused.status_code == 409 and refused.content_type == "application/problem+json"
    assert "reserved" in refused.json["detail"]
    accepted = client.post(f"/inventory/{sku}/adjustments", json={"quantity": -2, "reason": "stocktake"})
    assert accepted.status_code == 200 and accepted.json["version"] == 3
    untracked = client.post(f"/inventory/{new_sku()}/adjustments", json={"quantity": 1, "reason": "found"})
    assert untracked.status_code == 404


def test_if_match_names_the_skus_version_or_the_command_is_412(client: FlaskClient, env: Env) -> None:
    sku = new_sku()
    receive(client, sku, 5)
    stale = receive(client, sku, 1, **{"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.content_type == "application/problem+json"
    assert versions(env, sku) == [1]
    assert receive(client, sku, 1, **{"If-Match": '"1"'}).status_code == 201
    assert receive(client, new_sku(), 1, **{"If-Match": '"0"'}).status_code == 201  # a new SKU is at version 0


def test_a_retried_idempotency_key_replays_the_first_answer_and_appends_nothing(client: FlaskClient, env: Env) -> None:
    sku = new_sku()
    first = receive(client, sku, 5, **{"Idempotency-Key": f"k-{sku}"})
    again = receive(client, sku, 5, **{"Idempotency-Key": f"k-{sku}"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert versions(env, sku) == [1]
    other_body = receive(client, sku, 6, **{"Idempotency-Key": f"k-{sku}"})
    assert other_body.status_code == 422


# --- snapshots ------------------------------------------------------------------------------------


def test_snapshots_are_taken_every_n_events_and_never_change_an_answer(env: Env) -> None:
    sku, every = new_sku(), 4
    with env.engine.begin() as conn:
        stock.handle(conn, stock.ReceiveStock(sku, 100, "r"), META, snapshot_every=every)
    for n in range(10):
        with env.engine.begin() as conn:
            stock.reserve_lines(conn, f"order-{n}", lines((sku, n + 1)), META, snapshot_every=every)
    with env.engine.begin() as conn:
        stock.release_order(conn, "order-3", [sku], META, snapshot_every=every)
    taken = env.rows("SELECT version FROM snapshots WHERE stream_id = :s ORDER BY version", s=inventory_stream(sku))
    assert [row["version"] for row in taken] == [4, 8, 12]

    def loaded() -> tuple[int, int, int, dict[str, int]]:
        with env.engine.connect() as conn:
            current = stock.load_sku(conn, sku)
        return current.version, current.on_hand, current.reserved, current.reservations

    expected = (12, 100, 55 - 4, {f"order-{n}": n + 1 for n in range(10) if n != 3})
    assert loaded() == expected
    # A snapshot of another schema version is ignored: a wrong state under schema 0 changes nothing.
    with env.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE snapshots SET schema_version = 0, state = '{\"on_hand\": 1, \"reservations\": {}}'"
            " WHERE stream_id = %(s)s AND version = 12", {"s": inventory_stream(sku)}
        )  # fmt: skip
    assert loaded() == expected
    with env.engine.begin() as conn:  # and with no snapshot at all, the same answer from the whole stream
        conn.exec_driver_sql("DELETE FROM snapshots WHERE stream_id = %(s)s", {"s": inventory_stream(sku)})
    assert loaded() == expected


# --- reservations across streams ------------------------------------------------------------------


def test_one_short_line_reserves_nothing_and_moves_no_version(env: Env) -> None:
    plenty, scarce, untracked = new_sku(), new_sku(), new_sku()
    with env.engine.begin() as conn:
        stock.handle(conn, stock.ReceiveStock(plenty, 10, "r"), META)
        stock.handle(conn, stock.ReceiveStock(scarce, 1, "r"), META)
    with pytest.raises(InsufficientStock) as refused, env.engine.begin() as conn:
        stock.reserve_lines(conn, "order-1", lines((plenty, 2), (scarce, 2), (untracked, 99)), META)
    assert refused.value.short == {scarce: (2, 1)}
    assert versions(env, plenty, scarce, untracked) == [1, 1, 0]
    with env.engine.begin() as conn:
        reserved = stock.reserve_lines(conn, "order-1", lines((plenty, 2), (scarce, 1), (untracked, 99)), META)
    assert sorted((e.stream_id, e.type) for e in reserved) == sorted(
        [(inventory_stream(plenty), "UnitsReserved"), (inventory_stream(scarce), "UnitsReserved")]
    )
    with env.engine.begin() as conn:  # the same order again: reserved once
        assert stock.reserve_lines(conn, "order-1", lines((plenty, 2), (scarce, 1)), META) == []
    assert versions(env, plenty, scarce, untracked) == [2, 2, 0]


def test_a_stream_that_moved_fails_the_whole_multi_stream_append(env: Env) -> None:
    first, second = new_sku(), new_sku()
    with env.engine.begin() as conn:
        stock.handle(conn, stock.ReceiveStock(first, 10, "r"), META)
        stock.handle(conn, stock.ReceiveStock(second, 10, "r"), META)
    with env.engine.begin() as conn:
        stock.handle(conn, stock.ReceiveStock(second, 1, "r"), META)  # second moves on to version 2
    reserve = [(inventory_stream(first), 1, [UnitsReserved(first, "o", 1)]),
               (inventory_stream(second), 1, [UnitsReserved(second, "o", 1)])]  # fmt: skip
    with pytest.raises(ConcurrencyError), env.engine.begin() as conn:
        eventstore.append_streams(conn, reserve, META)
    assert versions(env, first, second) == [1, 2]


def test_forty_concurrent_reservations_of_ten_units_reserve_exactly_ten(env: Env) -> None:
    sku = new_sku()
    with env.engine.begin() as conn:
        stock.handle(conn, stock.ReceiveStock(sku, 10, "r"), META)
    outcomes: list[str] = []
    start = threading.Barrier(40)

    def reserve(n: int) -> None:
        start.wait(timeout=30)
        for _ in range(200):  # retried on ConcurrencyError; bounded
            try:
                with env.engine.connect() as conn, conn.begin():
                    _reserve(conn, f"order-{n}", sku)
                outcomes.append("reserved")
                return
            except ConcurrencyError:
                continue
            except InsufficientStock:
                outcomes.append("short")
                return
        outcomes.append("gave up")

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["reserved"] * 10 + ["short"] * 30
    with env.engine.connect() as conn:
        final = stock.load_sku(conn, sku)
    assert (final.on_hand, final.reserved, final.available, len(final.reservations)) == (10, 10, 0, 10)


def _reserve(conn: Connection, order_id: str, sku: str) -> None:
    stock.reserve_lines(conn, order_id, lines((sku, 1)), META, snapshot_every=3)
