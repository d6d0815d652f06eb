"""Alembic environment for the pax ledger. `target_metadata` is the models' metadata, so
`alembic check` (and tests/runner/ledger/test_migrations.py) can compare models and schema."""

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlmodel import SQLModel

from runner.ledger import models  # noqa: F401 - registers the tables on SQLModel.metadata
from runner.ledger.db import MIGRATION_LOCK

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # replicas starting together migrate one at a time (transactional DDL: the
                # next one then reads the version the first committed)
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
