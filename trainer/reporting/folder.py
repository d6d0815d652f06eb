"""The trainer's link to a runner it cannot reach (a cloud job without inbound access): the run
folder, in a bucket, is the whole conversation.

- Points go out as a series of small *closed* files, `outbox/<time>-<pid>-<seq>.jsonl`, one
  per flush (every `flush_s`, and at the end): a bucket mount uploads a file once it is closed,
  so the service reads them while the run trains, and a preempted attempt loses at most one
  flush. Names never repeat across attempts; a point is its run, name and step, so reading one
  twice is harmless.
- `heartbeat.json` (step, tokens, attempt, time) is rewritten whole at each flush.
- The service's word comes back as `stop.json` (why), read at each flush: the kill rule's
  verdict or a cancel; the trainer then evaluates, checkpoints and exits 3, as it does when an
  HTTP answer says stop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from trainer.reporting.base import Reporter, Stop, to_points
from trainer.runs import HEARTBEAT, OUTBOX_PARTS, STOP, write_json


class FolderReporter(Reporter):
    def __init__(self, run_dir: Path, *, flush_s: float = 15.0):
        self.run_dir = Path(run_dir)
        self.parts = self.run_dir / OUTBOX_PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self.buffer: list[dict] = []
        self.last = {"step": 0, "tokens": 0}
        self.next_flush = 0.0  # the first record flushes: the service hears of the start at once
        self.seq = 0
        self.stop: Stop | None = None

    def log(self, record: dict) -> None:
        if "step" in record:
            self.last = {
                **self.last,
                "step": int(record["step"]),
                "tokens": int(record.get("tokens", 0)),
            }
        if record.get("event") == "start":
            self.last["attempt"] = int(record.get("attempt", 1))
        self.buffer += to_points(record)
        if time.monotonic() >= self.next_flush:
            self.flush()

    def flush(self) -> None:
        """One closed part with the buffered points, the heartbeat, and the stop file's word."""
        if self.buffer:
            self.seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self.seq:06d}.jsonl"
            tmp = self.parts / f".{name}.tmp"
            tmp.write_text("".join(json.dumps(p) + "\n" for p in self.buffer))
            os.replace(tmp, self.parts / name)  # whole or not at all, then closed
            self.buffer = []
        write_json(self.run_dir / HEARTBEAT, {**self.last, "time": time.time()})
        self.next_flush = time.monotonic() + self.flush_s
        if self.stop is None and (self.run_dir / STOP).is_file():
            try:
                why = json.loads((self.run_dir / STOP).read_text()).get("reason")
            except (OSError, ValueError):
                why = None
            self.stop = Stop(why or "the runner asked to stop (stop.json)")

    def stop_requested(self) -> Stop | None:
        return self.stop

    def close(self) -> None:
        self.flush()
