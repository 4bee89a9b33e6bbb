"""The SQLAlchemy engine, built by whoever composes a process (never at import time)."""

from __future__ import annotations

import json

from sqlalchemy import Engine, create_engine

from app.config import Settings


def make_engine(settings: Settings, pool_size: int = 5) -> Engine:
    """An engine on psycopg 3 with a pool sized to the process.

    No pre-ping (it costs a round trip per checkout): a connection that turns out dead raises a
    disconnect error, and SQLAlchemy then discards the whole pool, so the next checkout is fresh.
    """
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
        json_serializer=lambda obj: json.dumps(obj, separators=(",", ":")),
    )
