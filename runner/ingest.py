"""Group commit for metric ingest.

Each acknowledged post must be durable (synchronous=FULL: the commit waits for fsync), and a
commit per request would make the fsync the ceiling. Requests therefore hand their rows to one
writer thread, which writes everything that queued up meanwhile in a single transaction, commits
once, and only then answers each request with its own counts. Latency under load is one commit;
throughput grows with concurrency instead of being capped by it.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from sqlalchemy.engine import Engine

from runner.db import WRITE_LOCK

INSERT_POINT = (
    "INSERT OR IGNORE INTO metric_points (run_id, name, step, tokens, value) VALUES (?, ?, ?, ?, ?)"
)
UPSERT_LATEST = (
    "INSERT INTO latest_metrics (run_id, name, step, tokens, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(run_id, name) DO UPDATE SET step=excluded.step, tokens=excluded.tokens, "
    "value=excluded.value WHERE excluded.step >= latest_metrics.step"
)
TOUCH_RUN = (
    "UPDATE runs SET tokens_seen = MAX(tokens_seen, ?), last_heartbeat = ?, "
    "status = CASE WHEN status = 'launching' THEN 'running' ELSE status END "
    "WHERE id = ?"
)
MAX_GROUP = 256  # requests per transaction


class GroupWriter:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pax-ingest")
        self.thread.start()

    def enqueue(self, run_id: int, rows: list[tuple]) -> Future:
        """Queue `rows` (run_id, name, step, tokens, value); the future gives how many were new,
        once they are committed."""
        fut: Future = Future()
        self.q.put((run_id, rows, fut))
        return fut

    def submit(self, run_id: int, rows: list[tuple]) -> int:
        return self.enqueue(run_id, rows).result(timeout=60)

    def _loop(self) -> None:
        conn = self.engine.raw_connection()  # this thread's own connection, for its lifetime
        raw = conn.dbapi_connection
        while True:
            group = [self.q.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.q.get_nowait())
                except queue.Empty:
                    break
            try:
                counts = self._write(raw, group)
            except Exception as e:  # every waiting request learns of it; the loop goes on
                raw.rollback()
                for *_, fut in group:
                    fut.set_exception(e)
                continue
            for (_, _, fut), n in zip(group, counts, strict=True):
                fut.set_result(n)

    @staticmethod
    def _write(raw, group) -> list[int]:
        counts = []
        t = time.time()
        with WRITE_LOCK:
            for run_id, rows, _ in group:
                before = raw.total_changes
                raw.executemany(INSERT_POINT, rows)
                counts.append(raw.total_changes - before)
                latest: dict[str, tuple] = {}
                for r in rows:  # the newest point per name
                    if r[1] not in latest or r[2] >= latest[r[1]][2]:
                        latest[r[1]] = r
                if latest:
                    raw.executemany(UPSERT_LATEST, list(latest.values()))
                if rows:
                    raw.execute(TOUCH_RUN, (max(r[3] for r in rows), t, run_id))
            raw.commit()  # one fsync for the whole group
        return counts


_writers: dict[int, GroupWriter] = {}
_lock = threading.Lock()


def writer_for(engine: Engine) -> GroupWriter:
    with _lock:
        w = _writers.get(id(engine))
        if w is None:
            w = _writers[id(engine)] = GroupWriter(engine)
        return w
