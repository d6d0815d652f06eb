"""Which service runs the scheduler. On SQLite the start-up lock file already keeps a second
service off the ledger, so the one service always leads. On PostgreSQL any number of services
share the ledger, and the one holding a session-level advisory lock leads; the others ask again
each tick, on the same connection. The lock lives on a connection of its own (outside the pool:
a pooled connection would go back to the pool still holding it), so it ends with that
connection: when the leader exits, is killed or loses the server, PostgreSQL releases the lock
and the next ask wins.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import create_engine, exc, pool, text
from sqlalchemy.engine import Connection, Engine

from runner.ledger.db import SCHEDULER_LOCK

log = logging.getLogger("pax.leader")


class Leadership:
    def __init__(self, engine: Engine):
        self.shared = engine.dialect.name == "postgresql"
        self._engine = (
            create_engine(engine.url, poolclass=pool.NullPool, connect_args={"connect_timeout": 5})
            if self.shared
            else None
        )
        self._conn: Connection | None = None
        self._holds = False

    def held(self) -> bool:
        """Whether this service leads now: asks for the lock when it does not hold it, and
        checks that its connection (so the lock) is still there when it does."""
        if not self.shared:
            return True
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            if self._holds:
                self._conn.execute(text("SELECT 1"))
            else:
                self._holds = bool(
                    self._conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEDULER_LOCK}
                    ).scalar()
                )
            self._conn.commit()  # a session lock outlives the transaction that took it
            return self._holds
        except exc.DBAPIError as e:
            log.warning("scheduler leadership: the database did not answer (%s)", e.orig)
            self._drop()
            return False

    def _drop(self) -> None:
        self._holds = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        """Give the lock up now (a clean shutdown), so a replica takes over at its next tick."""
        if self._conn is not None and self._holds:
            with contextlib.suppress(Exception):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEDULER_LOCK})
                self._conn.commit()
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
