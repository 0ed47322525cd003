"""Alembic environment: migrations run synchronously over psycopg (v3)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from handwork_payments.db import sqlalchemy_url
from handwork_payments.models import Base

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # procrastinate's tables come from its own schema file (0002), not from our models.
    return not (type_ == "table" and name is not None and name.startswith("procrastinate_"))


def run_migrations_online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    assert url, "migrations need a database URL"
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Every process runs the migrations at start-up (serve, any number of workers):
        # one at a time, the others then find the schema at head. Released on disconnect.
        connection.execute(
            text("SELECT pg_advisory_lock(hashtext('handwork_payments.migrations'))")
        )
        connection.commit()
        context.configure(
            connection=connection, target_metadata=target_metadata, include_name=include_name
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
