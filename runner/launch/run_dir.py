"""The one reader (and, for its stop file, writer) of a run's folder, wherever it is: a local
directory, a worker's folder or a cloud job's folder in a bucket (any fsspec URL: a path, a
mount, s3://, gs://). The names are the trainer's own (trainer.runs). What a trainer leaves
there (its metric outbox, heartbeat, metrics.json and exit.json) is how the service hears a job
that cannot post, and how it settles any run whose exit it saw: the same path for every
launcher. Its outbox is one file
(`outbox.jsonl`, a trainer that posts) or closed parts (`outbox/`, one that can't); the
service's word back to the latter is `stop.json`.

Ingest is idempotent (a point is its run, name and step), so reading an outbox again from its
start is harmless; `RunDirs` keeps how far it got per folder only to read less.
"""

from __future__ import annotations

import json
import logging

import fsspec
from sqlalchemy.engine import Engine

from runner.ledger.attempts import Prices
from runner.ledger.ingest import ingest
from runner.ledger.lifecycle import heartbeat
from runner.ledger.models import Run
from runner.ledger.results import get_result, store_result
from trainer.runs import EXIT, HEARTBEAT, METRICS, OUTBOX, OUTBOX_PARTS, STOP

log = logging.getLogger("pax.run_dir")
BATCH = 5000  # points per ingest transaction


class RunDirReader:
    """One run's folder, read through fsspec."""

    def __init__(self, url: str):
        self.url = str(url).rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url)

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open(f"{self.base}/{name}", "rb") as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def points(self, start: int = 0) -> tuple[list[tuple], int]:
        """The outbox's complete lines from byte `start` as (name, step, tokens, value), and
        where the next read starts (a line still being written waits for it)."""
        try:
            with self.fs.open(f"{self.base}/{OUTBOX}", "rb") as f:
                f.seek(start)
                data = f.read()
        except (FileNotFoundError, OSError):
            return [], start
        end = data.rfind(b"\n") + 1
        return parse_points(data[:end].splitlines()), start + end

    def part_names(self) -> list[str]:
        """The outbox's closed part files (a job that can't post writes one per flush), in the
        order they were written."""
        try:
            found = self.fs.ls(f"{self.base}/{OUTBOX_PARTS}", detail=False)
        except (FileNotFoundError, OSError):
            return []
        names = (str(p).rsplit("/", 1)[-1] for p in found)
        return sorted(n for n in names if n.endswith(".jsonl") and not n.startswith("."))

    def part(self, name: str) -> list[tuple]:
        raw = self.read(f"{OUTBOX_PARTS}/{name}") or b""
        return parse_points(raw.splitlines())

    def write_stop(self, reason: str) -> None:
        """The service's word to a trainer it can't answer (read at the trainer's next flush)."""
        with self.fs.open(f"{self.base}/{STOP}", "w") as f:
            f.write(json.dumps({"reason": reason}))

    def doc(self, name: str) -> dict | None:
        """A JSON document of the folder, or None (missing, or torn while being replaced)."""
        raw = self.read(name)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def exit_code(self) -> int | None:
        """The code the run script reported beside the run (`pax report-exit`), if any."""
        try:
            return int((self.doc(EXIT) or {})["code"])
        except (KeyError, TypeError, ValueError):
            return None


def parse_points(lines) -> list[tuple]:
    out = []
    for line in lines:
        try:
            p = json.loads(line)
            out.append((p["name"], int(p["step"]), int(p["tokens"]), float(p["value"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line: its points are in the next attempt's posts
    return out


class RunDirs:
    """The scheduler's view of its runs' folders: what it took in from each, and the one path
    that takes a folder's news into the ledger."""

    def __init__(self):
        self.offsets: dict[str, int] = {}  # folder -> bytes of its outbox taken in
        self.parts: dict[str, set[str]] = {}  # folder -> outbox parts taken in
        self.beats: dict[str, bytes] = {}  # folder -> the heartbeat last seen (its bytes)
        self.stopped: set[str] = set()  # folders told to stop

    def take_in(
        self,
        engine: Engine,
        run: Run,
        url: str,
        *,
        now: float,
        heartbeats: bool,
        pricing: Prices | None = None,
    ) -> dict:
        """New points, the result (when the ledger has none) and, when `heartbeats` (a job
        that cannot post), a changed heartbeat, marked with the service's own clock (a cloud
        machine's is not trusted)."""
        reader = RunDirReader(url)
        got = {"points": 0, "heartbeat": False, "result": False, "new": []}
        points, end = reader.points(self.offsets.get(reader.url, 0))
        seen = self.parts.setdefault(reader.url, set())
        fresh = [n for n in reader.part_names() if n not in seen]
        for name in fresh:
            points += reader.part(name)
        for i in range(0, len(points), BATCH):
            got["points"] += ingest(engine, run.id, points[i : i + BATCH])
        self.offsets[reader.url] = end
        seen.update(fresh)
        got["new"] = points
        if heartbeats and (raw := reader.read(HEARTBEAT)) and raw != self.beats.get(reader.url):
            beat = reader.doc(HEARTBEAT)
            if beat is not None:
                self.beats[reader.url] = raw
                heartbeat(
                    engine,
                    run_id=run.id,
                    at=now,
                    step=beat.get("step"),
                    tokens=_int(beat.get("tokens")),
                    attempt=beat.get("attempt"),
                    pricing=pricing,
                    source="read from its run folder",
                )
                got["heartbeat"] = True
        if get_result(engine, run_id=run.id) is None and (result := reader.doc(METRICS)):
            try:
                store_result(engine, run_id=run.id, metrics=result)
                got["result"] = True
            except ValueError as e:  # NaN in a hand-edited document: said, not fatal
                log.warning("run %s: %s in %s is not storable (%s)", run.id, METRICS, url, e)
        return got

    def exit_code(self, url: str) -> int | None:
        return RunDirReader(url).exit_code()

    def tell_stop(self, url: str, reason: str) -> None:
        """Write the stop file once per folder (a trainer that can't hear answers reads it)."""
        if url in self.stopped:
            return
        try:
            RunDirReader(url).write_stop(reason)
            self.stopped.add(url)
        except OSError as e:  # the bucket is away: the next tick tries again
            log.warning("could not tell %s to stop (%s); trying again", url, e)


def _int(v) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0
