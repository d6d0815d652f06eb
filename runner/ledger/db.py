"""The ledger's engine, from one SQLAlchemy URL: SQLite by default (a plain path is a SQLite
file), PostgreSQL for teams (`postgresql://...`, through psycopg 3: `pip install .[postgres]`).
Alembic migrations for both.

SQLite: WAL, synchronous=FULL, busy_timeout, foreign keys. Writes open their transaction with
BEGIN IMMEDIATE (`write_session`, `write_connection`): the write lock is taken at the start, so a
writer waits its turn in SQLite's busy handler instead of failing with "database is locked" when
it upgrades a read, and two processes on one file are as safe as two threads. Readers never wait
for writers (WAL).

PostgreSQL: READ COMMITTED, the server's own durability (synchronous_commit=on, its default, is
never lowered here: an acknowledged write has been flushed to the WAL). Writers that change a run
lock its row first (`lock_run`), claims skip rows other claimers hold (FOR UPDATE SKIP LOCKED),
and migrations of several replicas starting at once take turns on an advisory lock.
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
MIGRATIONS = resources.files("migrations")
WRITE = {"pax_write": True}  # execution option: this transaction writes


# pg_advisory_lock keys (one 64-bit namespace per database): migrations, the scheduler's
# leadership (runner.ledger.leader), and a shared GPU's charges (runner.ledger.attempts)
MIGRATION_LOCK = 0x7061_7801  # "pax" 1
SCHEDULER_LOCK = 0x7061_7802
DEVICE_LOCK = 0x7061_7803  # with hashtext(device): attempts on one GPU end one at a time


def database_url(db: str | Path) -> str:
    """A SQLAlchemy URL; a plain path is a SQLite file. postgres:// and postgresql:// mean
    psycopg 3 (SQLAlchemy alone would pick psycopg2, which pax does not install)."""
    text = str(db)
    if "://" not in text:
        return f"sqlite:///{Path(text)}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return text


def sqlite_path(db: str | Path) -> Path | None:
    """The file of a SQLite ledger (None for another database or an in-memory one), without
    the URL's options (`?mode=rw` names the same file)."""
    url = database_url(db)
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def redacted(db: str | Path) -> str:
    """The URL for messages and logs: never its password."""
    from sqlalchemy.engine import make_url

    url = database_url(db)
    if url.startswith("sqlite:"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show its scheme only, never what might be a secret
        return url.split("://", 1)[0] + "://..."


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
    if (path := sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=16,
            max_overflow=16,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    pg = url.startswith("postgresql")
    return create_engine(
        url,
        pool_size=16,
        max_overflow=16,
        pool_pre_ping=True,  # a replica outlives a database restart
        connect_args={"connect_timeout": 10, "application_name": "pax"} if pg else {},
    )


def alembic_config(db: str | Path):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url(db))
    return cfg


def upgrade(db: str | Path, revision: str = "head") -> None:
    """Bring the ledger's schema to `revision` (data kept: migrations only add and copy)."""
    from alembic import command

    if (path := sqlite_path(db)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def lock_run(s: Session, run_id: int):
    """The run, its row locked until the transaction ends (SELECT ... FOR UPDATE on PostgreSQL:
    a concurrent writer of the same run waits, then reads what was committed; on SQLite the
    write transaction already holds the database's lock, and FOR UPDATE is not rendered)."""
    from runner.ledger.models import Run

    return s.get(Run, run_id, with_for_update=True, populate_existing=True)


def ledger_id(engine: Engine) -> str | None:
    """This ledger's own id (made by migration 0005): names its bucket, shown by /healthz."""
    from sqlalchemy import select

    from runner.ledger.models import LedgerInfo

    t = LedgerInfo.__table__.c
    with engine.connect() as conn:
        return conn.execute(select(t.value).where(t.key == "ledger_id")).scalar()
