"""A live run's curves without re-reading them: the chart-sized series of each (run, metric) is
kept, and a refresh reads only the points after its last step, appended and thinned again when
the kept list grows past twice the chart's size. A full read happens again after FULL_EVERY_S
(a point that arrived out of order, e.g. from a resent outbox, is then picked up).
"""

from __future__ import annotations

import threading
import time

from runner.ledger import series as series_store

FULL_EVERY_S = 60.0


class SeriesCache:
    def __init__(self, max_entries: int = 2048):
        self.entries: dict[tuple[int, str], tuple[float, list[tuple]]] = {}
        self.max_entries = max_entries
        self.lock = threading.Lock()  # pages render in a thread pool

    def get(self, engine, run_id: int, name: str, max_points: int) -> list[tuple]:
        """(step, tokens, value) points of one metric, at most about `max_points`."""
        key = (run_id, name)
        with self.lock:
            hit = self.entries.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] > FULL_EVERY_S:
            pts = series_store.read(engine, run_id, name, max_points).points
            t = now
        else:
            t, pts = hit
            last = pts[-1][0] if pts else -1
            tail = series_store.read(engine, run_id, name, max_points, after_step=last).points
            if tail:
                pts = pts + tail
                if len(pts) > 2 * max_points:
                    pts = series_store.thin(pts, max_points)
        with self.lock:
            if len(self.entries) >= self.max_entries:
                self.entries.clear()
            self.entries[key] = (t, pts)
        return pts
