"""Alembic environment: migrations are plain SQL, run against DATABASE_URL (or the URL given in code)."""

from alembic import context
from sqlalchemy import create_engine

from app.config import Settings, sqlalchemy_url

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().database_url

engine = create_engine(sqlalchemy_url(url))
with engine.begin() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
