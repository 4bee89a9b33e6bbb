"""The baseline: the thinnest honest app for our write path.

Bare Flask, one INSERT into PostgreSQL and one XADD to Redis per request, no validation, no event
store, no outbox. Served by gunicorn with the same settings as orderstream in bench/load.py.
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
