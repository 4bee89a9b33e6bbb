"""The inventory_levels projection run by the real projector process (relay, Redis Streams, its own
consumer group): equal to a rebuild from the log, after a kill -9 mid-run too; read over HTTP, with
time travel over a SKU's stream."""

from __future__ import annotations

import uuid
from decimal import Decimal

from app.entry.factory import create_app
from app.eventlog.events import Line
from commands import stock
from queries.inventory_levels import INVENTORY_LEVELS
from tests.support import Env, api_client, assert_exactly_once, rebuilt_rows, wait_for, workers, write_orders

META = {"actor": "test"}
LEVELS = "SELECT * FROM inventory_levels ORDER BY sku"


def write_stock(env: Env, skus: int, orders: int) -> list[str]:
    """`skus` SKUs received, then `orders` orders reserving a unit of two of them; every third order
    released, every fifth shipped; one adjustment each. Their SKUs."""
    names = [f"SKU-{uuid.uuid4().hex[:8]}" for _ in range(skus)]
    with env.engine.begin() as conn:
        for sku in names:
            stock.handle(conn, stock.ReceiveStock(sku, 1_000, "r"), META, snapshot_every=7)
    for n in range(orders):
        order_id, pair = f"order-{uuid.uuid4()}", [names[n % skus], names[(n + 1) % skus]]
        with env.engine.begin() as conn:
            stock.reserve_lines(conn, order_id, [Line(s, 1 + n % 3, Decimal(1)) for s in pair], META, 7)
            if n % 3 == 0:
                stock.release_order(conn, order_id, pair, META, 7)
            elif n % 5 == 0:
                stock.ship_order(conn, order_id, pair, META, 7)
    with env.engine.begin() as conn:
        for sku in names:
            stock.handle(conn, stock.AdjustStock(sku, -1, "stocktake"), META, snapshot_every=7)
    return names


def converged(env: Env) -> bool:
    """Every stock event is reflected (each row at its stream's last version)."""
    streams = env.scalar("SELECT count(DISTINCT stream_id) FROM events WHERE stream_id LIKE 'inventory:%'")
    behind = env.scalar(
        "SELECT count(*) FROM (SELECT stream_id, max(version) AS v FROM events WHERE stream_id LIKE 'inventory:%'"
        " GROUP BY stream_id) e JOIN inventory_levels l ON 'inventory:' || l.sku = e.stream_id AND l.version = e.v"
    )
    return bool(streams) and behind == streams


def assert_equals_a_rebuild(env: Env) -> None:
    wait_for(lambda: converged(env), timeout=30, what="inventory_levels to reflect every stock event")
    live = [dict(r) for r in env.rows(LEVELS)]
    assert live == rebuilt_rows(env, INVENTORY_LEVELS, {"inventory_levels": LEVELS})["inventory_levels"]
    assert all(row["available"] == row["on_hand"] - row["reserved"] >= 0 for row in live)


def test_the_projector_process_equals_a_rebuild_and_answers_over_http(fresh_env: Env) -> None:
    projectors = (("projector",), ("projector", "--projection", "inventory_levels"))
    with workers(fresh_env, ("relay",), *projectors):
        write_orders(fresh_env, 5)  # order streams beside stock streams: each projection keeps to its own
        skus = write_stock(fresh_env, 4, 30)
        assert_equals_a_rebuild(fresh_env)
        assert_exactly_once(fresh_env)  # order_summaries, undisturbed by the stock streams
    app = create_app(fresh_env.settings)
    try:
        client = api_client(app)
        with fresh_env.engine.connect() as conn:
            truth = stock.load_sku(conn, skus[0])
        shown = client.get(f"/inventory/{skus[0]}?min_version={truth.version}")
        assert shown.status_code == 200, shown.json
        expected = {"sku": skus[0], "on_hand": truth.on_hand, "reserved": truth.reserved,
                    "available": truth.available, "version": truth.version}  # fmt: skip
        assert shown.json == expected
        assert client.get("/inventory/NEVER-RECEIVED").status_code == 404
        ahead = client.get(f"/inventory/{skus[0]}?min_version={truth.version + 1}")
        assert ahead.status_code == 409 and ahead.headers["Retry-After"] == "1"
        every = client.get("/inventory?page_size=2")
        assert every.status_code == 200 and len(every.json) == 2
        assert every.headers["X-Pagination"] and '"total": 4' in every.headers["X-Pagination"]
        low = client.get(f"/inventory?available_below={truth.available + 1}")
        assert skus[0] in [row["sku"] for row in low.json]
        assert all(row["available"] <= truth.available for row in low.json)
        # time travel: the SKU as it was after its receipt, and its events
        first = client.get(f"/inventory/{skus[0]}/history?version=1")
        assert first.status_code == 200, first.json
        assert (first.json["on_hand"], first.json["reserved"], first.json["version"]) == (1_000, 0, 1)
        now = client.get(f"/inventory/{skus[0]}/history?version={truth.version}").json
        assert (now["on_hand"], now["reserved"], now["available"]) == (truth.on_hand, truth.reserved, truth.available)
        events = client.get(f"/inventory/{skus[0]}/events")
        assert events.status_code == 200 and len(events.json) == truth.version
        assert events.json[0]["type"] == "StockReceived" and events.json[0]["stream_id"] == f"inventory:{skus[0]}"
        assert client.get("/inventory/NEVER-RECEIVED/history?version=1").status_code == 404
    finally:
        app.extensions["orderstream"]["engine"].dispose()


def test_a_killed_inventory_projector_loses_nothing(fresh_env: Env) -> None:
    """kill -9 the inventory projector mid-run; a new one picks up its pending entries and the gaps."""
    with workers(fresh_env, ("relay",)):
        spec = ("projector", "--projection", "inventory_levels", "--name", "victim")
        with workers(fresh_env, spec, ORDERSTREAM_CONSUMER_BATCH="5") as (victim,):
            write_stock(fresh_env, 3, 20)
            wait_for(lambda: fresh_env.scalar("SELECT count(*) FROM inventory_levels") > 0, what="projecting")
            victim.kill()
        write_stock(fresh_env, 3, 20)  # written while no inventory projector runs
        with workers(fresh_env, ("projector", "--projection", "inventory_levels", "--name", "survivor")):
            assert_equals_a_rebuild(fresh_env)
