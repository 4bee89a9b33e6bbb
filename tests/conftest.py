"""Fixtures: the tests run against real PostgreSQL and Redis, each test module set in its own database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.entry.factory import create_app
from app.platform import schema
from app.platform.config import Settings
from tests.support import Env, admin, api_client, database_url_for, ensure_reachable, isolated_env


@pytest.fixture(scope="session")
def base_settings() -> Iterator[Settings]:
    """The servers named by DATABASE_URL/REDIS_URL (`make test` sets them, embedded if unset)."""
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
    with isolated_env(base_settings, template_db) as e:
        yield e


@pytest.fixture
def fresh_env(base_settings: Settings, template_db: str) -> Iterator[Env]:
    """A database and key prefix of this test's own."""
    with isolated_env(base_settings, template_db) as e:
        yield e


@pytest.fixture(scope="module")
def app(env: Env) -> Iterator[Flask]:
    flask_app = create_app(env.settings)
    flask_app.config["TESTING"] = True
    yield flask_app
    flask_app.extensions["orderstream"]["engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client with the environment's admin token."""
    return api_client(app)


@pytest.fixture(scope="module")
def order_id(app: Flask) -> str:
    """An order placed in the module's environment (pending, one line of SKU "A")."""
    from tests.test_api import place

    return place(api_client(app))
