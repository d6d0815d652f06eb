"""The in-process scheduler: claim queued runs, launch them, watch exits and leases.

One loop, every `tick_s`:
  1) stop what should no longer run (cancelled or killed runs whose process is alive)
  2) settle runs whose process exited: take in what the trainer left in its run directory
     (metric outbox, metrics.json), then succeeded / killed / failed, or requeue (crash,
     preemption) until the retry limit
  3) leases: an active run with no heartbeat for `lease_s` is lost and requeued; its next
     attempt resumes from the run's checkpoint
  4) claim queued runs (priority, then age) up to the concurrency limit and start them
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from runner import crud, plans
from runner.launchers.base import RUNNING, UNKNOWN, LaunchSpec
from runner.models import ACTIVE, FINISHED, Run
from runner.settings import Settings

log = logging.getLogger("pax.scheduler")
EXIT_OK, EXIT_BAD_CONFIG, EXIT_KILLED, EXIT_PREEMPTED = 0, 2, 3, 75
OUTBOX = "outbox.jsonl"


def run_dir_for(settings: Settings, run: Run) -> Path:
    return Path(settings.runs_root) / f"{run.id:06d}-{run.name}"


def reconcile_outbox(engine: Engine, run: Run, run_dir: Path) -> int:
    """Ingest every point the trainer buffered (idempotent: repeats are ignored)."""
    path = run_dir / OUTBOX
    if not path.is_file():
        return 0
    points = []
    for line in path.read_text().splitlines():
        try:
            p = json.loads(line)
            points.append((p["name"], int(p["step"]), int(p["tokens"]), float(p["value"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
    total = 0
    for i in range(0, len(points), 5000):
        total += crud.ingest_metrics(engine, run=run, points=points[i : i + 5000])[0]
    return total


def reconcile_result(engine: Engine, run: Run, run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    if crud.get_result(engine, run_id=run.id) is None:
        crud.post_result(engine, run=run, metrics=metrics)
    return metrics


class Scheduler:
    def __init__(self, engine: Engine, settings: Settings, launcher):
        self.engine = engine
        self.settings = settings
        self.launcher = launcher
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopping: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pax-scheduler")
        self.thread.start()

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive anything one tick meets
                log.error("scheduler tick failed:\n%s", traceback.format_exc())
            self.stop_event.wait(self.settings.tick_s)

    # ------------------------------------------------------------ one pass

    def tick(self) -> None:
        import time

        s = self.settings
        for run in crud.active_runs(self.engine):
            if run.launcher != self.launcher.name or not run.backend_id:
                code = UNKNOWN
            else:
                code = self.launcher.poll(run.backend_id)
            if code not in (RUNNING, UNKNOWN):
                self.settle(run, int(code))
            elif self._over_limit(run, time.time()):
                if run.backend_id:
                    self.launcher.stop(run.backend_id, s.stop_grace_s)
                crud.move(
                    self.engine,
                    run_id=run.id,
                    to="failed",
                    only_from=ACTIVE,
                    reason=self._over_limit(run, time.time()),
                )
            elif self._lease_expired(run, time.time()):
                if run.backend_id and code is RUNNING:
                    self.launcher.stop(run.backend_id, s.stop_grace_s)
                crud.requeue_or_fail(
                    self.engine,
                    run_id=run.id,
                    max_attempts=s.max_attempts,
                    lost=True,
                    reason=f"no heartbeat for {s.lease_s:.0f}s (lease expired)",
                )
        self._stop_finished()
        plans.advance(self.engine)  # promotion when a ranking phase has finished
        if s.concurrency > 0:
            busy = sum(1 for r in crud.active_runs(self.engine) if r.launcher == self.launcher.name)
            for run, token in crud.claim_queued(
                self.engine, limit=s.concurrency - busy, launcher=self.launcher.name
            ):
                self.launch(run, token)

    def _over_limit(self, run: Run, now: float) -> str | None:
        """A reason to stop a run that ran too long or cost too much, or None."""
        from runner.cost import charge

        s = self.settings
        if not run.started_at:
            return None
        if s.max_run_hours and now - run.started_at > 3600 * s.max_run_hours:
            return (
                f"time limit: running {(now - run.started_at) / 3600:.2f} h > {s.max_run_hours} h"
            )
        if s.max_run_usd and run.cost_usd + charge(now - run.started_at)[1] > s.max_run_usd:
            return f"cost limit: over ${s.max_run_usd:.2f} (PAX_MAX_RUN_USD)"
        return None

    def _lease_expired(self, run: Run, now: float) -> bool:
        if run.last_heartbeat is None:  # not heard from yet: still starting up
            return (
                run.started_at is not None and now - run.started_at > self.settings.startup_grace_s
            )
        return now - run.last_heartbeat > self.settings.lease_s

    def _stop_finished(self) -> None:
        """Cancelled runs whose process still runs: SIGTERM, then SIGKILL after the grace.
        (A run stopped by the kill rule is told so in its next answer and exits by itself,
        with its final evaluation; it is not signalled.) Processes of runs that are no longer
        active are reaped, and what they left in their run directory is taken in."""
        alive = getattr(self.launcher, "alive", lambda: [])()
        for backend_id, run in self._runs_by_backend(alive):
            if run.status == "cancelled" and backend_id not in self.stopping:
                self.stopping.add(backend_id)
                self.launcher.stop(backend_id, self.settings.stop_grace_s)
        exited = getattr(self.launcher, "exited", lambda: [])()
        for backend_id, run in self._runs_by_backend(exited):
            if run.status in FINISHED:  # active runs are settled by the poll in tick()
                self.launcher.poll(backend_id)  # reaps it
                if run.run_dir:
                    reconcile_outbox(self.engine, run, Path(run.run_dir))
                    reconcile_result(self.engine, run, Path(run.run_dir))

    def _runs_by_backend(self, backend_ids: list[str]):
        from sqlmodel import Session, col, select

        with Session(self.engine) as sess:
            rows = sess.exec(select(Run).where(col(Run.backend_id).in_(backend_ids))).all()
        return [(r.backend_id, r) for r in rows]

    def launch(self, run: Run, token: str) -> None:
        run_dir = Path(run.run_dir) if run.run_dir else run_dir_for(self.settings, run)
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "spec.yaml"
        config_path.write_text(yaml.safe_dump({"base": json.loads(run.spec_json)}))
        spec = LaunchSpec(
            run_id=run.id,
            attempt=run.attempt,
            run_dir=run_dir,
            config_path=config_path,
            env={
                "PAX_RUNNER_URL": self.settings.url,
                "PAX_RUN_ID": str(run.id),
                "PAX_RUN_TOKEN": token,
                "PAX_HEARTBEAT_S": str(self.settings.heartbeat_s),
            },
        )
        try:
            backend_id = self.launcher.start(spec)
        except OSError as e:
            crud.move(
                self.engine,
                run_id=run.id,
                to="failed",
                only_from=ACTIVE,
                reason=f"{self.launcher.name} launcher could not start the trainer: {e}",
            )
            return
        mount = self.settings.sky_bucket_mount
        if self.launcher.name == "skypilot" and mount:
            # the run lives in the checkpoint bucket (/pax/runs/<id> in the job): where this
            # host sees it, so an exited run's buffered metrics and result are taken in
            run_dir = Path(mount) / "runs" / str(run.id)
        crud.set_run_fields(self.engine, run_id=run.id, backend_id=backend_id, run_dir=str(run_dir))
        crud.move(
            self.engine,
            run_id=run.id,
            to="running",
            only_from=("launching",),
            reason=f"started by the {self.launcher.name} launcher ({backend_id})",
        )

    def settle(self, run: Run, code: int) -> None:
        """The trainer exited with `code`: reconcile its files, then decide the run's state."""
        run_dir = Path(run.run_dir or run_dir_for(self.settings, run))
        reconcile_outbox(self.engine, run, run_dir)
        metrics = reconcile_result(self.engine, run, run_dir)
        apply_exit(
            self.engine,
            run.id,
            code,
            self.settings.max_attempts,
            log=str(run_dir / "train.log"),
            metrics=metrics,
        )


def apply_exit(
    engine: Engine,
    run_id: int,
    code: int,
    max_attempts: int,
    *,
    log: str,
    metrics: dict | None = None,
) -> None:
    """The run's next state from its trainer's exit code (the documented codes)."""
    if code == EXIT_PREEMPTED:
        crud.requeue_or_fail(
            engine,
            run_id=run_id,
            max_attempts=max_attempts,
            reason="preempted (exit 75; checkpoint written)",
        )
    elif code == EXIT_OK:
        status = ((metrics or {}).get("run") or {}).get("status", "succeeded")
        crud.move(engine, run_id=run_id, to=status, only_from=ACTIVE, reason="trainer exited 0")
    elif code == EXIT_KILLED:
        crud.move(
            engine,
            run_id=run_id,
            to="killed",
            only_from=ACTIVE,
            reason="stopped by the kill rule (exit 3)",
        )
    elif code == EXIT_BAD_CONFIG:
        crud.move(
            engine,
            run_id=run_id,
            to="failed",
            only_from=ACTIVE,
            reason=f"bad config or input (exit 2); see {log}",
        )
    else:
        crud.requeue_or_fail(
            engine,
            run_id=run_id,
            max_attempts=max_attempts,
            reason=f"trainer crashed (exit {code}); see {log}",
        )
