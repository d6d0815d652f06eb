"""Hearing cloud jobs through their bucket: a job that cannot reach the service (no inbound
connection) leaves everything in its run directory there (runs/<id>/: the metric outbox,
heartbeat.json, metrics.json, exit.json), and the service reads it, through a mount of the
bucket or any fsspec URL (s3://, gs://, a local folder). Ingest is idempotent (a point is its
run, name and step), so reading an outbox again from its start is harmless; the reader keeps
how far it got, per run, only to read less.
"""

from __future__ import annotations

import json
import logging

import fsspec
from sqlalchemy.engine import Engine

from runner.ledger import crud
from runner.ledger.ingest import ingest
from runner.ledger.models import Run

log = logging.getLogger("pax.bucket")


class BucketReader:
    def __init__(self, root: str):
        self.root = str(root).rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.offsets: dict[int, int] = {}  # run id -> bytes of its outbox already taken in
        self.beats: dict[int, str] = {}  # run id -> the heartbeat last seen (its text)

    def run_path(self, run_id: int, name: str) -> str:
        return f"{self.base}/runs/{run_id}/{name}"

    def read(self, run_id: int, name: str) -> bytes | None:
        try:
            with self.fs.open(self.run_path(run_id, name), "rb") as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def sync(self, engine: Engine, run: Run, now: float) -> dict:
        """Take in what the job wrote since the last call: new points, a new heartbeat (the
        service's own clock marks it: a cloud machine's clock is not trusted), its result."""
        got = {"points": 0, "heartbeat": False, "result": False}
        got["points"] = self._outbox(engine, run)
        beat = self.read(run.id, "heartbeat.json")
        if beat is not None and self.beats.get(run.id) != beat.decode(errors="replace"):
            self.beats[run.id] = beat.decode(errors="replace")
            try:
                doc = json.loads(beat)
                crud.outbox_heartbeat(
                    engine,
                    run_id=run.id,
                    at=now,
                    tokens=int(doc.get("tokens") or 0),
                    attempt=doc.get("attempt"),
                )
                got["heartbeat"] = True
            except (ValueError, TypeError):
                pass  # a torn file: the next one will do
        result = self.read(run.id, "metrics.json")
        if result is not None and crud.get_result(engine, run_id=run.id) is None:
            try:
                crud.store_result(engine, run_id=run.id, metrics=json.loads(result))
                got["result"] = True
            except ValueError:
                pass
        return got

    def exit_code(self, run_id: int) -> int | None:
        raw = self.read(run_id, "exit.json")
        try:
            return int(json.loads(raw)["code"]) if raw else None
        except (ValueError, KeyError, TypeError):
            return None

    def _outbox(self, engine: Engine, run: Run) -> int:
        start = self.offsets.get(run.id, 0)
        try:
            with self.fs.open(self.run_path(run.id, "outbox.jsonl"), "rb") as f:
                f.seek(start)
                data = f.read()
        except (FileNotFoundError, OSError):
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        points = []
        for line in data[:end].splitlines():
            try:
                p = json.loads(line)
                points.append((p["name"], int(p["step"]), int(p["tokens"]), float(p["value"])))
            except (ValueError, KeyError, TypeError):
                continue
        self.offsets[run.id] = start + end
        return sum(
            ingest(engine, run.id, points[i : i + 5000]) for i in range(0, len(points), 5000)
        )
