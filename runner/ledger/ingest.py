"""Metric points into the ledger: one statement set for SQLite and PostgreSQL, and a group-commit
writer for the API's hot path.

Each acknowledged post must be durable (synchronous=FULL: the commit waits for fsync), and a
commit per request would make the fsync the ceiling. Requests therefore hand their rows to one
writer thread, which writes everything that queued up meanwhile in a single transaction, commits
once, and only then answers each request with its own counts. Latency under load is one commit;
throughput grows with concurrency instead of being capped by it.

A point is new when its (run, name, step) is; a repeat is ignored, and `latest` moves only with
points that were actually stored, so it always agrees with the series.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from sqlalchemy import case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from runner.ledger.db import write_connection
from runner.ledger.models import LatestMetric, MetricPoint, Run

MAX_GROUP = 256  # requests per transaction
POINTS = MetricPoint.__table__
LATEST = LatestMetric.__table__
RUNS = Run.__table__


def _insert(conn: Connection, table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def write_points(conn: Connection, run_id: int, rows: list[tuple]) -> int:
    """Store `rows` (name, step, tokens, value) of one run in the caller's transaction; return
    how many were new."""
    if not rows:
        return 0
    stored = conn.execute(
        _insert(conn, POINTS)
        .on_conflict_do_nothing()
        .returning(POINTS.c.name, POINTS.c.step, POINTS.c.tokens, POINTS.c.value),
        [{"run_id": run_id, "name": n, "step": s, "tokens": t, "value": v} for n, s, t, v in rows],
    ).all()
    newest: dict[str, tuple] = {}
    for name, step, tokens, value in stored:
        if name not in newest or step >= newest[name][0]:
            newest[name] = (step, tokens, value)
    if newest:
        ins = _insert(conn, LATEST)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[LATEST.c.run_id, LATEST.c.name],
                set_={
                    "step": ins.excluded.step,
                    "tokens": ins.excluded.tokens,
                    "value": ins.excluded.value,
                },
                where=ins.excluded.step >= LATEST.c.step,
            ),
            [
                {"run_id": run_id, "name": n, "step": s, "tokens": t, "value": v}
                for n, (s, t, v) in newest.items()
            ],
        )
    return len(stored)


def touch_run(conn: Connection, run_id: int, rows: list[tuple], now: float, token_hash) -> None:
    """A post of points is as good as a heartbeat, for the attempt whose token posted them
    (fenced by its token hash: a late post of an ended attempt never renews the next one's
    lease). Tokens seen only grow."""
    top = max(r[2] for r in rows)
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, RUNS.c.token_hash.is_not_distinct_from(token_hash))
        .values(
            tokens_seen=case((RUNS.c.tokens_seen < top, top), else_=RUNS.c.tokens_seen),
            last_heartbeat=now,
        )
    )


def ingest(engine: Engine, run_id: int, rows: list[tuple]) -> int:
    """One transaction of points, outside the hot path (an ended run's outbox, taken in by the
    scheduler): the points only, no heartbeat."""
    with write_connection(engine) as conn:
        return write_points(conn, run_id, rows)


class GroupWriter:
    """The API's writer thread (one per app; `close` ends it)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pax-ingest")
        self.thread.start()

    def enqueue(self, run_id: int, rows: list[tuple], token_hash: str | None) -> Future:
        """Queue `rows` (name, step, tokens, value) posted with the attempt token whose hash is
        `token_hash`; the future gives how many were new, once they are committed."""
        fut: Future = Future()
        self.q.put((run_id, rows, token_hash, fut))
        return fut

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self.q.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.q.put(None)  # finish this group, then stop
                    break
                group.append(item)
            try:
                with write_connection(self.engine) as conn:  # one fsync for the whole group
                    t, counts = time.time(), []
                    for run_id, rows, token_hash, _ in group:
                        counts.append(write_points(conn, run_id, rows))
                        touch_run(conn, run_id, rows, t, token_hash)
            except Exception as e:  # every waiting request learns of it; the loop goes on
                for *_, fut in group:
                    fut.set_exception(e)
                continue
            for (*_, fut), n in zip(group, counts, strict=True):
                fut.set_result(n)
