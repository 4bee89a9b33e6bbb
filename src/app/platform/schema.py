"""Applying the Alembic migrations (the app never creates tables on its own)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.platform.config import REPO


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema."""
    command.upgrade(alembic_config(database_url), "head")


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, as Alembic recorded it (None before the first)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(database_url: str) -> str | None:
    """The newest migration this code ships."""
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
