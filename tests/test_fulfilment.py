"""The fulfilment process manager on real PostgreSQL and Redis: it reserves, rejects, releases and
ships through the same handlers as the API, once per event however often it meets one; it never
oversells, with its process killed, with Redis restarted empty, or with two of them competing; and
its payment deadlines fire once, from PostgreSQL, whatever happened to Redis and the workers."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from app.entry.factory import create_app
from app.eventlog import store as eventstore
from app.eventlog.events import OrderStatus, inventory_stream
from app.platform.config import Settings
from commands.handlers import AddItem, CancelOrder, NewLine, PayOrder, PlaceOrder, RemoveItem, ShipOrder, handle
from commands.handlers import place_order as place_in_store
from commands.order import Order
from commands.stock import ReceiveStock, load_sku
from commands.stock import handle as handle_stock
from queries.inventory_levels import INVENTORY_LEVELS
from queries.order_summaries import ORDER_SUMMARIES
from tests.support import Env, RedisServer, Worker, api_client, upkeep, wait_for, workers
from workers import deadletters
from workers.checkpoints import apply_batch
from workers.consumers import consumers
from workers.fulfilment.deadlines import fire_due, fire_payment_deadlines
from workers.fulfilment.process import GROUP, process_manager

META = {"request_id": None, "correlation_id": "c-test", "causation_id": None, "actor": "test"}


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def receive(env: Env, sku: str, quantity: int) -> None:
    with env.engine.begin() as conn:
        handle_stock(conn, ReceiveStock(sku, quantity, "delivery"), META)


def place(env: Env, *lines: tuple[str, int], customer: str = "c-1") -> str:
    items = tuple(NewLine(sku, quantity, "2.50") for sku, quantity in lines)
    with env.engine.begin() as conn:
        return place_in_store(conn, PlaceOrder(customer, "EUR", items), META).order_id


def command(env: Env, cmd: Any) -> None:
    with env.engine.begin() as conn:
        handle(conn, cmd, META)


def order_of(env: Env, order_id: str) -> Order:
    with env.engine.connect() as conn:
        return Order.fold(order_id, (e.domain_event() for e in eventstore.load(conn, order_id)))


def types_of(env: Env, order_id: str) -> list[str]:
    with env.engine.connect() as conn:
        return [e.type for e in eventstore.load(conn, order_id)]


def stock_of(env: Env, sku: str) -> tuple[int, int, dict[str, int]]:
    """(on hand, reserved, reservations by order), as the SKU's events say."""
    with env.engine.connect() as conn:
        s = load_sku(conn, sku)
    return s.on_hand, s.reserved, s.reservations


def all_events(env: Env) -> list[Any]:
    with env.engine.connect() as conn:
        return eventstore.read_events(conn, 0, 1_000_000)


def run_pm(env: Env, settings: Settings | None = None) -> None:
    """The process manager meets every event of the log once more, as a redelivery would bring them
    (its checkpoints skip those it handled), until it appends nothing new."""
    pm = process_manager(settings or env.settings)
    while True:
        before = len(all_events(env))
        with env.engine.begin() as conn:
            apply_batch(conn, pm, all_events(env))
        if len(all_events(env)) == before:
            return


def execute(env: Env, sql: str) -> None:
    with env.engine.begin() as conn:
        conn.execute(text(sql))


def fulfilment_row(env: Env, order_id: str) -> dict[str, Any] | None:
    rows = env.rows("SELECT * FROM fulfilment WHERE order_id = :o", o=order_id)
    return rows[0] if rows else None


# --- reactions, the process manager run in-process on the real database --------------------------------


def test_a_new_order_reserves_its_tracked_lines_and_records_stock_reserved(fresh_env: Env) -> None:
    env = fresh_env
    tracked, untracked = new_sku(), new_sku()
    receive(env, tracked, 5)
    order_id = place(env, (tracked, 2), (untracked, 7))
    run_pm(env)
    assert types_of(env, order_id) == ["OrderCreated", "StockReserved"]
    assert stock_of(env, tracked) == (5, 2, {order_id: 2})
    assert stock_of(env, untracked) == (0, 0, {})  # never received: unlimited, untracked
    row = fulfilment_row(env, order_id)
    assert row is not None
    assert (row["state"], row["reserved"], row["deadline"]) == (
        "reserved",
        [{"sku": tracked, "quantity": 2}],
        "pending",
    )
    created_at = env.scalar("SELECT recorded_at FROM events WHERE stream_id = :s AND version = 1", s=order_id)
    assert row["payment_due_at"] == created_at + timedelta(seconds=env.settings.payment_timeout_s)
    # the command it issued is the process manager's, caused by the order's creation
    meta = env.scalar("SELECT metadata FROM events WHERE stream_id = :s AND version = 2", s=order_id)
    created_id = env.scalar("SELECT event_id::text FROM events WHERE stream_id = :s AND version = 1", s=order_id)
    assert (meta["actor"], meta["causation_id"], meta["correlation_id"]) == ("fulfilment", created_id, "c-test")


def test_an_order_of_untracked_skus_only_goes_on_as_before(fresh_env: Env) -> None:
    order_id = place(fresh_env, (new_sku(), 3))
    run_pm(fresh_env)
    assert types_of(fresh_env, order_id) == ["OrderCreated", "StockReserved"]
    command(fresh_env, PayOrder(order_id, "7.50", "psp"))
    run_pm(fresh_env)
    assert order_of(fresh_env, order_id).status is OrderStatus.PAID


def test_a_short_order_is_rejected_with_its_short_lines_and_reserves_nothing(fresh_env: Env) -> None:
    env = fresh_env
    a, b = new_sku(), new_sku()
    receive(env, a, 5)
    receive(env, b, 1)
    order_id = place(env, (a, 2), (b, 3))
    run_pm(env)
    assert types_of(env, order_id) == ["OrderCreated", "OrderRejected"]
    rejected = env.scalar("SELECT payload FROM events WHERE stream_id = :s AND version = 2", s=order_id)
    assert rejected == {
        "order_id": order_id, "reason": "insufficient stock", "refund_amount": None,
        "short": [{"sku": b, "requested": 3, "available": 1}],
    }  # fmt: skip
    assert stock_of(env, a) == (5, 0, {}) and stock_of(env, b) == (1, 0, {})  # all lines or none
    row = fulfilment_row(env, order_id)
    assert row is not None and (row["state"], row["deadline"]) == ("rejected", "cancelled")
    assert row["short"] == [{"sku": b, "requested": 3, "available": 1}]


def test_a_paid_order_that_is_rejected_is_refunded(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 1)
    order_id = place(env, (sku, 2))
    command(env, PayOrder(order_id, "5.00", "psp"))  # paid before the process manager met it
    run_pm(env)
    order = order_of(env, order_id)
    assert order.status is OrderStatus.REJECTED
    refund = env.scalar("SELECT payload->>'refund_amount' FROM events WHERE stream_id = :s AND type = 'OrderRejected'",
                        s=order_id)  # fmt: skip
    assert Decimal(refund) == order.paid_amount == Decimal("5.00")  # compensation: never paid without stock


def test_items_added_reserve_more_items_removed_release_theirs(fresh_env: Env) -> None:
    env = fresh_env
    a, b = new_sku(), new_sku()
    receive(env, a, 10)
    receive(env, b, 10)
    order_id = place(env, (a, 2))
    run_pm(env)
    command(env, AddItem(order_id, NewLine(a, 3, "2.50")))
    command(env, AddItem(order_id, NewLine(b, 4, "2.50")))
    run_pm(env)
    assert stock_of(env, a) == (10, 5, {order_id: 5}) and stock_of(env, b) == (10, 4, {order_id: 4})
    command(env, RemoveItem(order_id, b))
    run_pm(env)
    assert stock_of(env, b) == (10, 0, {})
    reserved = env.scalar(
        "SELECT payload FROM events WHERE stream_id = :s AND type = 'StockReserved' ORDER BY version DESC LIMIT 1",
        s=order_id,
    )
    assert reserved["lines"] == [{"sku": a, "quantity": 5}]


def test_cancelling_releases_exactly_what_was_reserved_and_shipping_consumes_it(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 10)
    kept, cancelled, other = place(env, (sku, 3)), place(env, (sku, 2)), place(env, (sku, 1))
    run_pm(env)
    assert stock_of(env, sku) == (10, 6, {kept: 3, cancelled: 2, other: 1})
    command(env, CancelOrder(cancelled, "changed mind"))
    command(env, PayOrder(kept, "7.50", "psp"))
    command(env, ShipOrder(kept, "DHL", "T-1"))
    run_pm(env)
    assert stock_of(env, sku) == (7, 1, {other: 1})  # 2 given back, 3 left the stock
    states = {o: (r := fulfilment_row(env, o)) and (r["state"], r["deadline"]) for o in (kept, cancelled, other)}
    assert states == {kept: ("shipped", "met"), cancelled: ("released", "cancelled"), other: ("reserved", "pending")}


def ship_unseen(env: Env, line: tuple[str, int], total: str) -> str:
    order_id = place(env, line)
    command(env, PayOrder(order_id, total, "psp"))
    command(env, ShipOrder(order_id, "DHL", "T"))
    run_pm(env)
    return order_id


def test_an_order_shipped_before_its_reservation_takes_its_units_once_or_is_flagged_short(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 3)
    early = ship_unseen(env, (sku, 2), "5.00")  # paid and shipped before the process manager met it
    short = ship_unseen(env, (sku, 5), "12.50")
    execute(env, f"DELETE FROM projection_checkpoints WHERE projection = '{GROUP}'")
    run_pm(env)  # a replay: shipped once, not twice
    assert stock_of(env, sku) == (0, 0, {})  # 2 for the first, the 1 left for the second: as far as it goes
    rows = {o: fulfilment_row(env, o) for o in (early, short)}
    assert {o: (r["state"], r["short"]) for o, r in rows.items() if r} == {
        early: ("shipped", None), short: ("shipped", [{"sku": sku, "requested": 5, "available": 1}]),
    }  # fmt: skip
    ships = Counter(e.payload["order_id"] for e in all_events(env) if e.type == "UnitsShipped")
    assert ships == {early: 1, short: 1}


def test_a_line_lowered_before_the_process_manager_met_it_gives_the_rest_back(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 10)
    order_id = place(env, (sku, 5))
    run_pm(env)
    command(env, RemoveItem(order_id, sku))  # both before it reacts: it sees 2 where it held 5
    command(env, AddItem(order_id, NewLine(sku, 2, "2.50")))
    run_pm(env)
    assert stock_of(env, sku) == (10, 2, {order_id: 2})
    command(env, PayOrder(order_id, "5.00", "psp"))
    command(env, ShipOrder(order_id, "DHL", "T"))
    run_pm(env)
    assert stock_of(env, sku) == (8, 0, {})  # 2 left the stock, not 5


def test_an_order_shipped_after_a_change_it_had_not_met_ships_its_current_lines(fresh_env: Env) -> None:
    env = fresh_env
    a, b = new_sku(), new_sku()
    receive(env, a, 10)
    receive(env, b, 10)
    order_id = place(env, (a, 5))
    run_pm(env)
    command(env, AddItem(order_id, NewLine(b, 3, "2.50")))  # added, paid and shipped while it was behind
    command(env, PayOrder(order_id, "20.00", "psp"))
    command(env, ShipOrder(order_id, "DHL", "T"))
    run_pm(env)
    assert (stock_of(env, a), stock_of(env, b)) == ((5, 0, {}), (7, 0, {}))


def test_a_sku_tracked_after_an_order_was_reserved_stays_unlimited_for_that_order(fresh_env: Env) -> None:
    env = fresh_env
    later, other = new_sku(), new_sku()
    order_id = place(env, (later, 4))
    run_pm(env)  # untracked: nothing held, StockReserved with no lines
    receive(env, later, 1)  # now tracked, with fewer units than the order has
    command(env, AddItem(order_id, NewLine(other, 1, "2.50")))
    run_pm(env)
    assert order_of(env, order_id).status is OrderStatus.PENDING  # not rejected for what was sold as unlimited
    assert stock_of(env, later) == (1, 0, {})
    command(env, AddItem(order_id, NewLine(later, 1, "2.50")))  # its line changed: now it is held, as tracked
    run_pm(env)
    assert order_of(env, order_id).status is OrderStatus.REJECTED


def test_a_redelivered_or_replayed_event_reserves_releases_and_records_once(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 10)
    order_id = place(env, (sku, 2))
    pm = process_manager(env.settings)
    for _ in range(3):  # a redelivery: the checkpoints skip what was handled
        with env.engine.begin() as conn:
            apply_batch(conn, pm, all_events(env))
    execute(env, f"DELETE FROM projection_checkpoints WHERE projection = '{GROUP}'")
    run_pm(env)  # a replay from the start, checkpoints gone: the reaction itself finds nothing to do
    command(env, CancelOrder(order_id, "no"))
    run_pm(env)
    execute(env, f"DELETE FROM projection_checkpoints WHERE projection = '{GROUP}'")
    run_pm(env)
    assert types_of(env, order_id) == ["OrderCreated", "StockReserved", "OrderCancelled"]
    stock_types = Counter(e.type for e in all_events(env) if e.stream_id == inventory_stream(sku))
    assert stock_types == {"StockReceived": 1, "UnitsReserved": 1, "UnitsReleased": 1}
    assert stock_of(env, sku) == (10, 0, {})


def test_get_order_shows_its_fulfilment(fresh_env: Env) -> None:
    env = fresh_env
    app = create_app(env.settings)
    client = api_client(app)
    sku = new_sku()
    receive(env, sku, 4)
    order_id = place(env, (sku, 3))
    project(env)
    shown = client.get(f"/orders/{order_id}").json
    assert shown["fulfilment"] == {
        "state": "reserving", "reserved": [], "short": None, "payment_due_at": None, "deadline": None, "version": None,
    }  # fmt: skip
    run_pm(env)
    project(env)
    shown = client.get(f"/orders/{order_id}").json
    assert shown["version"] == 2
    assert shown["fulfilment"]["state"] == "reserved"
    assert shown["fulfilment"]["reserved"] == [{"sku": sku, "quantity": 3}]
    assert (shown["fulfilment"]["deadline"], shown["fulfilment"]["version"]) == ("pending", 2)
    assert shown["fulfilment"]["payment_due_at"] is not None
    second = place(env, (sku, 3))  # one unit left
    run_pm(env)
    project(env)
    rejected = client.get(f"/orders/{second}").json
    assert (rejected["status"], rejected["cancellation_reason"]) == ("rejected", "insufficient stock")
    assert rejected["fulfilment"]["short"] == [{"sku": sku, "requested": 3, "available": 1}]
    listed = client.get("/orders?status=rejected").json
    assert [o["order_id"] for o in listed] == [second]
    admin = client.get("/admin/fulfilment?state=rejected")
    assert admin.status_code == 200 and [r["order_id"] for r in admin.json] == [second]
    assert client.get(f"/admin/fulfilment/{order_id}").json["reserved"] == [{"sku": sku, "quantity": 3}]
    assert client.get(f"/admin/fulfilment/{uuid.uuid4()}").status_code == 404
    assert client.get("/admin/fulfilment/summary").json["states"] == {"reserved": 1, "rejected": 1}
    assert client.get("/admin/fulfilment?state=nonsense").status_code == 422
    page = client.get("/admin")
    assert page.status_code == 200 and "<h2>Fulfilment</h2>" in page.text
    app.extensions["orderstream"]["engine"].dispose()


def project(env: Env) -> None:
    """order_summaries and inventory_levels meet every event of the log (their checkpoints skip repeats)."""
    with env.engine.begin() as conn:
        for projection in (ORDER_SUMMARIES, INVENTORY_LEVELS):
            apply_batch(conn, projection, all_events(env))


def test_a_reaction_that_fails_is_dead_lettered_and_can_be_redriven(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 5)
    good, bad = place(env, (sku, 1)), place(env, (sku, 1))
    execute(env, f"ALTER TABLE fulfilment ADD CONSTRAINT refuse_one CHECK (order_id <> '{bad}') NOT VALID")
    with workers(env, ("relay",), ("fulfilment",)):
        wait_for(lambda: types_of(env, good)[-1] == "StockReserved", what="the good order's reservation")
        letter = wait_for(
            lambda: env.rows("SELECT id, projection, stream_id FROM dead_letters WHERE status = 'open'"),
            what="the failing reaction's dead letter",
        )[0]
    assert (letter["projection"], letter["stream_id"]) == (GROUP, bad)
    assert types_of(env, bad) == ["OrderCreated"] and stock_of(env, sku)[2] == {
        good: 1
    }  # rolled back: nothing half done
    execute(env, "ALTER TABLE fulfilment DROP CONSTRAINT refuse_one")
    deadletters.redrive(env.engine, consumers(env.settings), letter["id"])
    assert types_of(env, bad) == ["OrderCreated", "StockReserved"]
    assert stock_of(env, sku)[2] == {good: 1, bad: 1}


# --- never oversell: real processes, concurrent orders, faults ------------------------------------------


UNITS, ORDERS = 10, 40


def place_concurrently(app: Flask, sku: str, count: int) -> list[str]:
    """`count` orders of one unit of the SKU, placed over HTTP from 8 threads at once."""

    def one(_: int) -> str:
        body = {
            "customer_id": "c-rush",
            "currency": "EUR",
            "items": [{"sku": sku, "quantity": 1, "unit_price": "1.00"}],
        }
        response = api_client(app).post("/orders", json=body)
        assert response.status_code == 201, response.json
        return str(response.json["order_id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def outcomes(env: Env, order_ids: list[str]) -> Counter[str]:
    """How each order ended up, from its events: reserved, rejected, or still waiting."""
    rows = env.rows(
        "SELECT stream_id, array_agg(type ORDER BY version) AS types FROM events"
        " WHERE stream_id = ANY(:ids) GROUP BY stream_id",
        ids=order_ids,
    )
    seen: Counter[str] = Counter()
    for row in rows:
        types = row["types"]
        assert types.count("StockReserved") <= 1 and types.count("OrderRejected") <= 1, types  # never twice
        seen["rejected" if "OrderRejected" in types else "reserved" if "StockReserved" in types else "waiting"] += 1
    return seen


def assert_never_oversold(env: Env, sku: str, order_ids: list[str]) -> None:
    wait_for(lambda: outcomes(env, order_ids)["waiting"] == 0, timeout=60, what="every order reserved or rejected")
    assert outcomes(env, order_ids) == {"reserved": UNITS, "rejected": ORDERS - UNITS}
    on_hand, reserved, reservations = stock_of(env, sku)
    holders = {o for o in order_ids if order_of(env, o).reserved}
    assert (on_hand, reserved, on_hand - reserved) == (UNITS, UNITS, 0)
    assert reservations == dict.fromkeys(holders, 1)  # exactly the orders that recorded StockReserved
    stock_events = Counter(e.type for e in all_events(env) if e.stream_id == inventory_stream(sku))
    assert stock_events == {"StockReceived": 1, "UnitsReserved": UNITS}  # none reserved twice, none released
    level = wait_for(
        lambda: env.rows(
            "SELECT on_hand, reserved, available FROM inventory_levels WHERE sku = :s AND reserved = :n", s=sku, n=UNITS
        ),
        what="inventory_levels to agree",
    )
    assert level == [{"on_hand": UNITS, "reserved": UNITS, "available": 0}]


@pytest.fixture
def rush(fresh_env: Env) -> Iterator[tuple[Env, Flask, str]]:
    app = create_app(fresh_env.settings)
    sku = new_sku()
    receive(fresh_env, sku, UNITS)
    yield fresh_env, app, sku
    app.extensions["orderstream"]["engine"].dispose()


def test_forty_orders_on_ten_units_reserve_exactly_ten(rush: tuple[Env, Flask, str]) -> None:
    env, app, sku = rush
    with workers(env, ("relay",), ("fulfilment",), ("projector", "--projection", "inventory_levels")):
        order_ids = place_concurrently(app, sku, ORDERS)
        assert_never_oversold(env, sku, order_ids)


def test_two_process_managers_competing_never_oversell(rush: tuple[Env, Flask, str]) -> None:
    env, app, sku = rush
    pms = (("fulfilment", "--name", "pm-1"), ("fulfilment", "--name", "pm-2"))
    with workers(env, ("relay",), *pms, ("projector", "--projection", "inventory_levels")) as started:
        order_ids = place_concurrently(app, sku, ORDERS)
        assert_never_oversold(env, sku, order_ids)
    handled = [w.log() for w in started[1:3]]
    assert all("Traceback" not in log for log in handled), handled


def test_the_process_manager_killed_again_and_again_never_oversells(rush: tuple[Env, Flask, str]) -> None:
    env, app, sku = rush
    with workers(env, ("relay",), ("projector", "--projection", "inventory_levels")):
        placing = threading.Thread(target=lambda: placed.extend(place_concurrently(app, sku, ORDERS)))
        placed: list[str] = []
        placing.start()
        for _ in range(4):  # kill -9 once it reacted to something; a new one (same name) finishes its own pending
            handled = env.scalar("SELECT count(*) FROM fulfilment")
            pm = Worker(env, "fulfilment", "--name", "pm-killed")
            wait_for(lambda: env.scalar("SELECT count(*) FROM fulfilment") > handled or len(placed) == ORDERS,  # noqa: B023
                     what="the process manager at work")  # fmt: skip
            pm.kill()
        placing.join(60)
        with workers(env, ("fulfilment", "--name", "pm-killed")):
            assert_never_oversold(env, sku, placed)


def test_redis_restarted_empty_mid_rush_never_oversells(own_redis_env: Env, redis_server: RedisServer) -> None:
    env = own_redis_env
    app = create_app(env.settings)
    sku = new_sku()
    receive(env, sku, UNITS)
    with workers(env, ("relay",), ("fulfilment",), ("projector", "--projection", "inventory_levels")):
        first = place_concurrently(app, sku, ORDERS // 2)
        wait_for(lambda: outcomes(env, first)["waiting"] < len(first), what="reactions under way")
        redis_server.kill()
        redis_server.wipe()
        redis_server.start()  # empty: no streams, no groups, no pending entries
        rest = place_concurrently(app, sku, ORDERS - len(first))
        assert_never_oversold(env, sku, first + rest)
    app.extensions["orderstream"]["engine"].dispose()


# --- payment deadlines --------------------------------------------------------------------------------


def test_two_firings_at_once_cancel_an_unpaid_order_once_and_a_paid_one_never(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 5)
    unpaid, paid, cancelled = place(env, (sku, 1)), place(env, (sku, 1)), place(env, (sku, 1))
    run_pm(env)
    command(env, PayOrder(paid, "2.50", "psp"))  # paid, cancelled: the process manager has not met these yet
    command(env, CancelOrder(cancelled, "no"))
    execute(env, "UPDATE fulfilment SET payment_due_at = now() - interval '1 second'")
    barrier = threading.Barrier(3)
    results: list[int] = []

    def fire() -> None:
        barrier.wait()
        results.append(fire_due(env.engine))

    threads = [threading.Thread(target=fire) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(results) == 1
    assert types_of(env, unpaid)[-1] == "OrderCancelled" and types_of(env, unpaid).count("OrderCancelled") == 1
    cancel = env.rows("SELECT payload, metadata FROM events WHERE stream_id = :s AND type = 'OrderCancelled'", s=unpaid)
    assert cancel[0]["payload"]["reason"] == "payment timeout" and cancel[0]["metadata"]["actor"] == "fulfilment"
    assert order_of(env, paid).status is OrderStatus.PAID
    assert types_of(env, cancelled).count("OrderCancelled") == 1
    deadlines = {o: fulfilment_row(env, o)["deadline"] for o in (unpaid, paid, cancelled)}  # type: ignore[index]
    assert deadlines == {unpaid: "fired", paid: "met", cancelled: "cancelled"}
    assert fire_due(env.engine) == 0  # fired once, never again
    run_pm(env)
    assert stock_of(env, sku) == (5, 1, {paid: 1})  # the cancelled orders' units are back
    assert fulfilment_row(env, unpaid)["deadline"] == "fired"  # type: ignore[index]


def test_the_scheduler_fires_a_deadline_about_a_second_after_it_is_due(fresh_env: Env) -> None:
    env = fresh_env
    sku = new_sku()
    receive(env, sku, 5)
    timeout = {"ORDERSTREAM_PAYMENT_TIMEOUT_S": "2"}
    with workers(env, ("relay",), ("fulfilment",), **timeout), upkeep(env):
        unpaid, paid = place(env, (sku, 2)), place(env, (sku, 1))
        wait_for(lambda: types_of(env, paid)[-1] == "StockReserved", what="the reservation")
        command(env, PayOrder(paid, "2.50", "psp"))
        wait_for(lambda: "OrderCancelled" in types_of(env, unpaid), timeout=20, what="the payment timeout")
        wait_for(lambda: stock_of(env, sku) == (5, 1, {paid: 1}), what="the expired order's units released")
    fired = env.rows(
        "SELECT e.recorded_at - f.payment_due_at AS late, e.metadata->>'actor' AS actor, e.payload->>'reason' AS reason"
        " FROM events e JOIN fulfilment f ON f.order_id::text = e.stream_id"
        " WHERE e.stream_id = :s AND e.type = 'OrderCancelled'",
        s=unpaid,
    )
    assert [(r["actor"], r["reason"]) for r in fired] == [("fulfilment", "payment timeout")]
    assert timedelta(0) <= fired[0]["late"] <= timedelta(seconds=2.5)  # the cron ticks every second
    assert order_of(env, paid).status is OrderStatus.PAID


def test_deadlines_survive_the_loss_of_redis_and_of_every_worker(own_redis_env: Env, redis_server: RedisServer) -> None:
    env = own_redis_env
    sku = new_sku()
    receive(env, sku, 3)
    timeout = {"ORDERSTREAM_PAYMENT_TIMEOUT_S": "3"}
    with workers(env, ("relay",), ("fulfilment",), **timeout):
        order_id = place(env, (sku, 2))
        wait_for(lambda: (fulfilment_row(env, order_id) or {}).get("deadline") == "pending", what="the deadline")
    redis_server.kill()  # every worker is gone too; Redis comes back empty after the deadline passed
    due = fulfilment_row(env, order_id)["payment_due_at"]  # type: ignore[index]
    wait_for(lambda: env.scalar("SELECT now() > :due", due=due), timeout=10, what="the due time to pass")
    redis_server.wipe()
    redis_server.start()
    with workers(env, ("relay",), ("fulfilment",), **timeout), upkeep(env):
        wait_for(lambda: "OrderCancelled" in types_of(env, order_id), timeout=20, what="the late firing")
        wait_for(lambda: stock_of(env, sku) == (3, 0, {}), what="the units released")
    assert types_of(env, order_id).count("OrderCancelled") == 1


def test_the_deadline_job_is_what_rq_runs(fresh_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job the cron scheduler enqueues builds its engine from the environment, as the rq worker's is."""
    env = fresh_env
    order_id = place(env, (new_sku(), 1))
    run_pm(env)
    execute(env, "UPDATE fulfilment SET payment_due_at = now() - interval '1 second'")
    for name, value in env.process_env().items():
        monkeypatch.setenv(name, value)
    assert fire_payment_deadlines() == 1
    assert order_of(env, order_id).status is OrderStatus.CANCELLED
