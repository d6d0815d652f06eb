"""The ledger's engine: SQLite (WAL, synchronous=FULL, busy_timeout, foreign keys) by default;
Alembic migrations.

Writes open their transaction with BEGIN IMMEDIATE (`write_session`, `write_connection`): the
write lock is taken at the start, so a writer waits its turn in SQLite's busy handler instead of
failing with "database is locked" when it upgrades a read, and two processes on one file are as
safe as two threads. Readers never wait for writers (WAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

# the Alembic environment ships inside the package, so an installed wheel migrates too
MIGRATIONS = resources.files("runner.ledger") / "migrations"
WRITE = {"pax_write": True}  # execution option: this transaction writes


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL; a plain path is a SQLite file."""
    text = str(db)
    return text if "://" in text else f"sqlite:///{Path(text)}"


def _sqlite_connect(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # pysqlite must not BEGIN by itself: _sqlite_begin does
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Reads run as SQLite's own per-statement transactions (no BEGIN, no ROLLBACK round trip:
    # the hot path's lookups stay cheap); a write transaction takes the lock at its start.
    if conn.get_execution_options().get("pax_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(db: str | Path) -> Engine:
    url = database_url(db)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=16,
            max_overflow=16,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


def alembic_config(db: str | Path):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url(db))
    return cfg


def upgrade(db: str | Path, revision: str = "head") -> None:
    """Bring the ledger's schema to `revision` (data kept: migrations only add and copy)."""
    from alembic import command

    url = database_url(db)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(db), revision)


def current_revision(db: str | Path) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for one write transaction (BEGIN IMMEDIATE on SQLite); commits on success."""
    with Session(engine.execution_options(**WRITE), expire_on_commit=False) as s:
        yield s
        s.commit()


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A Core connection in one write transaction; commits on success."""
    with engine.execution_options(**WRITE).begin() as conn:
        yield conn
