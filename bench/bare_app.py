"""The baseline: the thinnest honest app for our write path.

Bare Flask, one INSERT into PostgreSQL and one XADD to Redis per request, no validation, no event
store, no outbox. Served by gunicorn with the same settings as orderstream in bench/load.py.
GET /orders/<id> is the read baseline: one SELECT by primary key, the stored JSON back.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import psycopg
from flask import Flask, request
from psycopg.types.json import Jsonb
from redis import Redis

app = Flask(__name__)
_state: dict[str, Any] = {}


def _connections() -> tuple[psycopg.Connection[Any], Redis]:
    if "db" not in _state:  # one connection pair per gunicorn worker, made after the fork
        _state["db"] = psycopg.connect(os.environ["BARE_DATABASE_URL"], autocommit=True)
        _state["redis"] = Redis.from_url(os.environ["REDIS_URL"])
    return _state["db"], _state["redis"]


@app.post("/orders")
def create_order() -> tuple[dict[str, str], int]:
    body = request.get_json()
    order_id = str(uuid.uuid4())
    db, redis = _connections()
    db.execute("INSERT INTO bare_orders (id, body) VALUES (%s, %s)", (order_id, Jsonb(body)))
    redis.xadd(os.environ["BARE_STREAM"], {"order_id": order_id, "body": json.dumps(body)})
    return {"order_id": order_id}, 201


@app.get("/orders/<uuid:order_id>")
def get_order(order_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """The read baseline: one SELECT by primary key, 200 with the JSON, 404 otherwise."""
    db, _ = _connections()
    row = db.execute("SELECT body FROM bare_orders WHERE id = %s", (order_id,)).fetchone()
    if row is None:
        return {"title": "Not Found", "status": 404}, 404
    return {"order_id": str(order_id), **row[0]}, 200
