"""The peer: the same POST /orders through Flask and the `eventsourcing` library on PostgreSQL.

An Order aggregate (eventsourcing's declarative `Aggregate`, one `Created` event carrying the posted
customer, currency and items) saved by an `Application` whose persistence is the library's own
PostgreSQL module, configured through its environment variables:

    PERSISTENCE_MODULE=eventsourcing.postgres POSTGRES_DBNAME=... POSTGRES_HOST=... POSTGRES_PORT=...
    POSTGRES_USER=... POSTGRES_PASSWORD=...

No broker, no projection, no validation beyond reading the three fields. Served by gunicorn with the
same settings as orderstream in bench/load.py, on its own database. The tables are created once
before gunicorn starts (`python bench/peer_eventsourcing.py --create-tables`), so that the two
workers do not race to create them; the workers run with CREATE_TABLE=no.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from flask import Flask, request

app = Flask(__name__)
_state: dict[str, Any] = {}


def postgres_env(database_url: str) -> dict[str, str]:
    """eventsourcing.postgres's environment variables for a postgresql:// URL."""
    url = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        # a sync gunicorn worker serves one request at a time: one pooled connection is enough
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "1",
    }


class Order(Aggregate):
    @event("Created")
    def __init__(self, customer_id: str, currency: str, items: list[dict[str, Any]]) -> None:
        self.customer_id = customer_id
        self.currency = currency
        self.items = items


class Orders(Application[uuid.UUID]):
    def place_order(self, customer_id: str, currency: str, items: list[dict[str, Any]]) -> uuid.UUID:
        order = Order(customer_id, currency, items)
        self.save(order)
        return order.id


def _orders() -> Orders:
    if "orders" not in _state:  # one application (and its connection pool) per worker, after the fork
        _state["orders"] = Orders()
    orders: Orders = _state["orders"]
    return orders


@app.post("/orders")
def create_order() -> tuple[dict[str, str], int]:
    body = request.get_json()
    order_id = _orders().place_order(body["customer_id"], body["currency"], body["items"])
    return {"order_id": str(order_id)}, 201


if __name__ == "__main__" and "--create-tables" in sys.argv:
    Orders(env={"CREATE_TABLE": "yes"}).close()
