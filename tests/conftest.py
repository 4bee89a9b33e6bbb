"""Fixtures: the tests run against real PostgreSQL and Redis, each test module set in its own database.

Fixtures only, and nothing imported at the top but pytest: pytest loads this file for tests/unit too,
whose tests run with no server and no environment variable. Every fixture below starts or reaches
the services only when a test asks for it (tests/unit/conftest.py refuses, for unit tests).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from flask import Flask
    from flask.testing import FlaskClient

    from app.platform.config import Settings
    from tests.support import Env, RedisServer


@pytest.fixture(scope="session")
def base_settings() -> Iterator[Settings]:
    """The servers named by DATABASE_URL/REDIS_URL (`make test` sets them, embedded if unset)."""
    from app.platform.config import Settings
    from tests.support import ensure_reachable

    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        settings = Settings.from_env()
        ensure_reachable(settings)
        yield settings
        return
    from app.processes.servers import embedded_services

    with embedded_services() as urls:
        yield Settings.from_env(urls)


@pytest.fixture(scope="session")
def template_db(base_settings: Settings) -> Iterator[str]:
    """A migrated database that each test environment is copied from (CREATE DATABASE ... TEMPLATE)."""
    from app.platform import schema
    from tests.support import admin, database_url_for

    name = f"os_template_{uuid.uuid4().hex[:12]}"
    admin(base_settings.database_url, f'CREATE DATABASE "{name}"')
    try:
        schema.upgrade(database_url_for(base_settings.database_url, name))
        yield name
    finally:
        admin(base_settings.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def env(base_settings: Settings, template_db: str) -> Iterator[Env]:
    """A database and key prefix shared by the tests of one module."""
    from tests.support import isolated_env

    with isolated_env(base_settings, template_db) as e:
        yield e


@pytest.fixture
def fresh_env(base_settings: Settings, template_db: str) -> Iterator[Env]:
    """A database and key prefix of this test's own."""
    from tests.support import isolated_env

    with isolated_env(base_settings, template_db) as e:
        yield e


@pytest.fixture(scope="module")
def app(env: Env) -> Iterator[Flask]:
    from app.entry.factory import create_app

    flask_app = create_app(env.settings)
    flask_app.config["TESTING"] = True
    yield flask_app
    flask_app.extensions["orderstream"]["engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client with the environment's admin token."""
    from tests.support import api_client

    return api_client(app)


@pytest.fixture(scope="module")
def order_id(app: Flask) -> str:
    """An order placed in the module's environment (pending, one line of SKU "A")."""
    from tests.support import api_client, place

    return place(api_client(app))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may kill, wipe or roll back."""
    from tests.support import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_redis_env(base_settings: Settings, template_db: str, redis_server: RedisServer) -> Iterator[Env]:
    """An isolated environment whose Redis is a server this test may kill, wipe or roll back."""
    from tests.support import isolated_env

    with isolated_env(base_settings, template_db, redis_url=redis_server.url) as env:
        yield env
