"""The trainer's link to the runner: durable, batched, never in the way of training.

Every point is first appended (and fsynced) to `outbox.jsonl` in the run directory; a
background thread posts what is not yet acknowledged, in batches, with retry and backoff, and
records the acknowledged byte offset in `outbox.ack`. After a reconnect or a restart of either
side the unacknowledged tail is simply sent again; the service ignores repeats (its key is run,
name, step), so nothing is lost or doubled. The same thread sends heartbeats. An answer of
"stop" (the user cancelled, or the kill rule) is kept for the training loop to act on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx

from trainer.reporting.base import Reporter, Stop, to_points
from trainer.reporting.folder import FolderReporter
from trainer.runs import ACK, EXIT, HEARTBEAT, OUTBOX

PERMANENT = {400, 404, 409, 413, 422}  # retrying cannot help: skip, say so
# The token was revoked: a newer attempt of this run owns it now. Keep the points in the shared
# outbox (the next attempt's reporter sends them with its own token) and stop sending.
REVOKED = {401, 403}


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


class OutboxReporter(Reporter):
    """What a run launched by the runner leaves in its directory, whether or not the service
    can be reached: every point in `outbox.jsonl` (fsynced), and `heartbeat.json` (step, tokens,
    attempt, time; rewritten at most every heartbeat_s). A job with no inbound connection (a
    cloud job whose run directory is in a bucket) is heard through these files alone."""

    def __init__(self, run_dir: Path, *, heartbeat_s: float = 5.0):
        self.run_dir = Path(run_dir)
        self.heartbeat_s = heartbeat_s
        self.outbox = open(self.run_dir / OUTBOX, "ab")  # noqa: SIM115 - open for the run
        self.cond = threading.Condition()
        self.last = {"step": 0, "tokens": 0}
        self.next_beat_file = 0.0

    def log(self, record: dict) -> None:
        if "step" in record:
            self.last = {
                **self.last,
                "step": int(record["step"]),
                "tokens": int(record.get("tokens", 0)),
            }
        if record.get("event") == "start":  # the heartbeat tells the runner which attempt
            self.last["attempt"] = int(record.get("attempt", 1))
        if time.monotonic() >= self.next_beat_file:
            _write_json(self.run_dir / HEARTBEAT, {**self.last, "time": time.time()})
            self.next_beat_file = time.monotonic() + self.heartbeat_s
        points = to_points(record)
        if not points:
            return
        data = "".join(json.dumps(p) + "\n" for p in points).encode()
        with self.cond:
            self.outbox.write(data)
            self.outbox.flush()
            os.fsync(self.outbox.fileno())  # durable before anyone is told
            self.cond.notify()

    def close(self) -> None:
        _write_json(self.run_dir / HEARTBEAT, {**self.last, "time": time.time()})
        self.outbox.close()


class HttpReporter(OutboxReporter):
    """The outbox, and a background thread that posts it to the runner."""

    def __init__(
        self,
        run_dir: Path,
        url: str,
        run_id: str,
        token: str,
        *,
        heartbeat_s: float = 5.0,
        batch: int = 1000,
        timeout_s: float = 10.0,
        flush_timeout_s: float = 30.0,
    ):
        super().__init__(run_dir, heartbeat_s=heartbeat_s)
        self.base = f"{url.rstrip('/')}/api/v1/runs/{run_id}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.batch = batch
        self.timeout_s = timeout_s
        self.flush_timeout_s = flush_timeout_s
        self.closing = False
        self.stop: Stop | None = None
        self.pending_result: dict | None = None
        self.revoked = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pax-reporter")
        self.thread.start()

    def result(self, metrics: dict) -> None:
        with self.cond:
            self.pending_result = metrics
            self.cond.notify()

    def stop_requested(self) -> Stop | None:
        return self.stop

    def close(self) -> None:
        """Flush for up to flush_timeout_s; what is left stays in the outbox for a replay (next
        start) or for the runner to reconcile from the run directory."""
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join(timeout=self.flush_timeout_s + self.timeout_s)
        super().close()

    # ------------------------------------------------------------ sender thread

    def _acked(self) -> int:
        try:
            return int((self.run_dir / ACK).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _set_acked(self, offset: int) -> None:
        tmp = self.run_dir / (ACK + ".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.run_dir / ACK)

    def _pending(self) -> tuple[list[dict], int]:
        start = self._acked()
        points, end = [], start
        with open(self.run_dir / OUTBOX, "rb") as f:
            f.seek(start)
            for line in f:
                if not line.endswith(b"\n") or len(points) >= self.batch:
                    break  # a line still being written, or a full batch
                end += len(line)
                try:
                    points.append(json.loads(line))
                except ValueError:
                    continue
        return points, end

    def _answer(self, r: httpx.Response) -> None:
        body = r.json()
        if body.get("action") == "stop" and self.stop is None:
            self.stop = Stop(body.get("reason") or "the runner asked to stop")

    def _revoke(self, status: int) -> None:
        """The runner no longer accepts this attempt's token: a newer attempt owns the run (a
        lease expired while we were unheard). Training on unheard would race it: stop, and
        leave the run to it."""
        self.revoked = True
        self.stop = Stop(
            f"the runner revoked this attempt's token ({status}): a newer attempt owns the run",
            yield_run=True,
        )

    def _warn(self, msg: str) -> None:
        print(f"pax reporter: {msg}", file=sys.stderr, flush=True)

    def _loop(self) -> None:
        client = httpx.Client(timeout=self.timeout_s, headers=self.headers)
        backoff, next_beat, deadline = 0.0, 0.0, None
        while True:
            ok = True
            try:
                points, end = self._pending()
                if self.revoked:
                    break
                if points:
                    r = client.post(f"{self.base}/metrics", json={"points": points})
                    if r.status_code in REVOKED:
                        self._warn(
                            f"runner revoked this attempt's token ({r.status_code}): stopping; "
                            f"{len(points)}+ points stay in {OUTBOX} for the next attempt"
                        )
                        self._revoke(r.status_code)
                        continue
                    if r.status_code in PERMANENT:
                        self._warn(
                            f"runner refused {len(points)} points ({r.status_code}: "
                            f"{r.text[:200]}); skipping them"
                        )
                        self._set_acked(end)
                    else:
                        r.raise_for_status()
                        self._answer(r)
                        self._set_acked(end)
                        continue  # more may be waiting
                if time.monotonic() >= next_beat:
                    r = client.post(f"{self.base}/heartbeat", json=self.last)
                    if r.status_code in REVOKED:
                        self._revoke(r.status_code)
                        continue
                    if r.status_code not in PERMANENT:
                        r.raise_for_status()
                        self._answer(r)
                    next_beat = time.monotonic() + self.heartbeat_s
                if self.pending_result is not None and not points:
                    r = client.post(
                        f"{self.base}/result",
                        content=json.dumps(self.pending_result, default=str),
                        headers={"Content-Type": "application/json"},
                    )
                    if r.status_code in PERMANENT:
                        self._warn(f"runner refused the result ({r.status_code}: {r.text[:200]})")
                    else:
                        r.raise_for_status()
                    self.pending_result = None
                backoff = 0.0
            except (httpx.HTTPError, ValueError):
                ok = False
                backoff = min(5.0, max(0.2, backoff * 2))  # the service is slow or down
            with self.cond:
                if self.closing:
                    if deadline is None:
                        deadline = time.monotonic() + self.flush_timeout_s
                    done = ok and self.pending_result is None and not self._pending()[0]
                    if done or time.monotonic() >= deadline:
                        break
                    if ok:
                        continue
                wait = backoff if not ok else max(0.0, next_beat - time.monotonic())
                self.cond.wait(timeout=min(wait, self.heartbeat_s) if wait else 0.05)
        client.close()


def from_env(run_dir: Path) -> Reporter | None:
    """The runner's reporter for a launched run: posting to PAX_RUNNER_URL, or, for a job that
    the service cannot be reached from (PAX_RUN_ID without a URL), its run folder alone
    (trainer.reporting.folder: closed part files, the heartbeat, the stop file)."""
    url, run_id, token = (
        os.environ.get(k) for k in ("PAX_RUNNER_URL", "PAX_RUN_ID", "PAX_RUN_TOKEN")
    )
    beat = float(os.environ.get("PAX_HEARTBEAT_S", "5"))
    if url and run_id and token:
        return HttpReporter(run_dir, url, run_id, token, heartbeat_s=beat)
    if run_id:
        return FolderReporter(run_dir, flush_s=beat)
    return None  # not launched by a runner: local files only


def report_exit(run_dir: Path, code: int, tries: int = 5) -> bool:
    """How a launched trainer ended, for the ledger: `exit.json` beside the run (read from the
    bucket when the service cannot be reached) and, when it can, POST /runs/{id}/exit. True
    when the service acknowledged it."""
    _write_json(Path(run_dir) / EXIT, {"code": int(code), "time": time.time()})
    url, run_id, token = (
        os.environ.get(k) for k in ("PAX_RUNNER_URL", "PAX_RUN_ID", "PAX_RUN_TOKEN")
    )
    if not (url and run_id and token):
        return False
    for i in range(tries):
        try:
            r = httpx.post(
                f"{url.rstrip('/')}/api/v1/runs/{run_id}/exit",
                json={"code": int(code)},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            return r.status_code < 400
        except httpx.HTTPError:
            time.sleep(min(10, 2**i))
    return False
