"""The SQLite ledger: WAL, synchronous=FULL, busy_timeout, foreign keys; Alembic migrations.

The service is the only writer. Writes go through one process-wide lock, so concurrent requests
queue in Python instead of meeting "database is locked"; WAL lets readers proceed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "migrations"
WRITE_LOCK = threading.Lock()


def _pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(db_path: Path) -> Engine:
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"check_same_thread": False, "timeout": 10},
        pool_size=16,
        max_overflow=16,
    )
    event.listen(engine, "connect", _pragmas)
    return engine


def alembic_config(db_path: Path):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{Path(db_path)}")
    return cfg


def upgrade(db_path: Path, revision: str = "head") -> None:
    """Bring the ledger's schema to `revision` (data kept: migrations only add and copy)."""
    from alembic import command

    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(db_path), revision)


def current_revision(db_path: Path) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db_path)
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return rev


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for one write transaction, serialised with every other writer."""
    with WRITE_LOCK, Session(engine, expire_on_commit=False) as s:
        yield s
        s.commit()
