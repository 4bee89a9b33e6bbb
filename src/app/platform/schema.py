"""Applying the Alembic migrations (the app never creates tables on its own)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.platform.config import REPO


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema."""
    command.upgrade(alembic_config(database_url), "head")
