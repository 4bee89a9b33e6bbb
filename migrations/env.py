"""Alembic environment: migrations are plain SQL, run against DATABASE_URL (or the URL given in code)."""

from alembic import context
from sqlalchemy import create_engine, text

from app.platform.config import Settings, sqlalchemy_url

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().database_url

engine = create_engine(sqlalchemy_url(url))
MIGRATIONS_LOCK = 0x6F726465  # "orde": one migrator at a time (two launchers starting together)

with engine.begin() as connection:
    # Taken before alembic reads the schema's version: a second migrator waits, then finds it current.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATIONS_LOCK})
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
