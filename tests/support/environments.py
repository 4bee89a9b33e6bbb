"""Isolated environments on the real services: a database copied from the migrated template and a
Redis key prefix of their own, and clients of them."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import Engine, text

from app.eventlog.personal import new_master_key
from app.platform.config import Settings
from app.platform.db import make_engine


def database_url_for(base_url: str, name: str) -> str:
    return base_url.rsplit("/", 1)[0] + "/" + name


def admin(base_url: str, sql: str) -> None:
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass
class Env:
    """One isolated orderstream: its own database (from the migrated template) and Redis key prefix."""

    settings: Settings
    engine: Engine
    redis: Redis
    database: str

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).mappings())

    def unpublished(self) -> int:
        """Outbox rows the relay has not published yet."""
        return int(self.scalar("SELECT count(*) FROM outbox WHERE entry_ms IS NULL"))

    def process_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.settings.database_url,
            "REDIS_URL": self.settings.redis_url,
            "ORDERSTREAM_KEY_PREFIX": self.settings.key_prefix,
            "ORDERSTREAM_CONSUMER_BLOCK_MS": str(self.settings.consumer_block_ms),
            "ORDERSTREAM_CLAIM_IDLE_MS": str(self.settings.claim_idle_ms),
            "ORDERSTREAM_CONSUMER_HEARTBEAT_MS": str(self.settings.consumer_heartbeat_ms),
            "ORDERSTREAM_MAX_DELIVERIES": str(self.settings.max_deliveries),
            "ORDERSTREAM_RETENTION_INTERVAL_MS": str(self.settings.retention_interval_ms),
            "ORDERSTREAM_RQ_QUEUE": self.settings.rq_queue,
            "ORDERSTREAM_ADMIN_TOKEN": self.settings.admin_token or "",
            "ORDERSTREAM_MASTER_KEY": self.settings.master_key or "",
            "ORDERSTREAM_STREAMS_REDIS_URL": self.settings.streams_redis_url or "",
            "ORDERSTREAM_STREAMS_CLUSTER": "1" if self.settings.streams_cluster else "",
            "ORDERSTREAM_PROJECTIONS": ",".join(self.settings.projections),
            **extra,
        }


@contextmanager
def isolated_env(
    base: Settings, template: str, redis_url: str | None = None, database_port: int | None = None
) -> Iterator[Env]:
    """A database copied from the template and a key prefix of its own; optionally another Redis,
    or the database reached through another port (a proxy that a fault test can cut)."""
    name = f"os_test_{uuid.uuid4().hex[:12]}"
    admin(base.database_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    database_url = database_url_for(base.database_url, name)
    if database_port is not None:
        database_url = re.sub(r"@[^/]+/", f"@127.0.0.1:{database_port}/", database_url)
    settings = replace(
        base,
        database_url=database_url,
        redis_url=redis_url or base.redis_url,
        key_prefix=f"ostest:{name}",
        consumer_block_ms=100,
        claim_idle_ms=500,
        max_deliveries=3,
        retention_interval_ms=200,
        rq_queue=f"ostest-{name}",
        admin_token=f"test-admin-{uuid.uuid4().hex}",
        master_key=new_master_key(),
        projections=("order_summaries",),  # the groups trimming waits for: the projectors tests run
    )
    env = Env(settings, make_engine(settings), Redis.from_url(settings.redis_url), name)
    try:
        yield env
    finally:
        env.engine.dispose()
        with contextlib.suppress(redis.RedisError):
            keys = list(env.redis.scan_iter(f"{settings.key_prefix}:*", count=1000))
            keys += list(env.redis.scan_iter(f"rq:*{settings.rq_queue}*", count=1000))
            if keys:
                env.redis.delete(*keys)
        env.redis.close()
        admin(base.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_reachable(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, connect_timeout=5):
        pass
    try:
        Redis.from_url(settings.redis_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"Redis at {settings.redis_url} is not reachable: {exc}") from exc


def api_client(app: Flask, token: str | None = None) -> FlaskClient:
    """A test client that sends a bearer token (the app's admin token unless told otherwise)."""
    client = app.test_client()
    token = token or app.extensions["orderstream"]["settings"].admin_token
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client
