"""The in-process scheduler: claim queued runs, launch them, watch exits and leases.

One loop, every `tick_s`:
  1) settle runs whose trainer exited: take in what it left in its run directory (metric
     outbox, metrics.json), then `apply_exit`: succeeded / killed / failed, or requeued (crash,
     preemption) until the retry limit
  2) limits and leases: a run over its time or cost limit is stopped; an active run with no
     heartbeat for `lease_s` is lost and requeued (its next attempt resumes from the run's
     checkpoint), or killed when a stop had been requested of it
  3) stop what should no longer run (cancelled runs whose process is alive)
  4) the tick hook (the study's promotion and sweep closing)
  5) claim queued runs (priority, then age) up to the concurrency limit and start them
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from runner.launch.base import RUNNING, UNKNOWN, Launcher, LaunchSpec, run_dir_under
from runner.launch.cost import Pricing, budget_refusal
from runner.ledger import crud
from runner.ledger.ingest import ingest
from runner.ledger.models import ACTIVE, FINISHED, Run
from runner.settings import Settings
from trainer.exits import EXIT_BAD_CONFIG, EXIT_KILLED, EXIT_OK, EXIT_PREEMPTED

log = logging.getLogger("pax.scheduler")
OUTBOX = "outbox.jsonl"


def run_dir_for(settings: Settings, run: Run) -> Path:
    return run_dir_under(settings.runs_root, run.id, run.name)


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
    return sum(ingest(engine, run.id, points[i : i + 5000]) for i in range(0, len(points), 5000))


def reconcile_result(engine: Engine, run: Run, run_dir: Path) -> dict | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return crud.get_result(engine, run_id=run.id)
    metrics = json.loads(path.read_text())
    if crud.get_result(engine, run_id=run.id) is None:
        crud.store_result(engine, run_id=run.id, metrics=metrics)
    return metrics


def apply_exit(
    engine: Engine,
    pricing: Pricing | None,
    run_id: int,
    code: int,
    max_attempts: int,
    *,
    log: str,
    metrics: dict | None = None,
) -> None:
    """The run's next state from its trainer's exit code (the documented codes): the one place
    an exit becomes a state, whoever reports it (local launcher, worker, cloud job, import)."""
    run = crud.get_run(engine, run_id=run_id)
    if code == EXIT_PREEMPTED:
        crud.requeue_or_fail(
            engine,
            run_id=run_id,
            max_attempts=max_attempts,
            pricing=pricing,
            reason="preempted (exit 75; checkpoint written)",
        )
    elif code == EXIT_OK:
        status = ((metrics or {}).get("run") or {}).get("status", "succeeded")
        status = status if status in FINISHED else "succeeded"
        reason = ((metrics or {}).get("run") or {}).get("exit_reason") or "trainer exited 0"
        _finish(engine, pricing, run, status, reason)
    elif code == EXIT_KILLED:
        reason = run.stop_reason or "stopped by the kill rule (exit 3)"
        _finish(engine, pricing, run, "killed", reason)
    elif code == EXIT_BAD_CONFIG:
        _finish(engine, pricing, run, "failed", f"bad config or input (exit 2); see {log}")
    else:
        crud.requeue_or_fail(
            engine,
            run_id=run_id,
            max_attempts=max_attempts,
            pricing=pricing,
            reason=f"trainer crashed (exit {code}); see {log}",
        )


def _finish(engine, pricing, run: Run, status: str, reason: str) -> None:
    # a queued run may be finished too: a result imported for a run trained elsewhere
    crud.set_status(
        engine,
        run_id=run.id,
        to=status,
        reason=reason,
        pricing=pricing,
        only_from=(*ACTIVE, "queued"),
    )


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        launcher: Launcher,
        pricing: Pricing,
        on_tick: Callable[[], None] | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.launcher = launcher
        self.pricing = pricing
        self.on_tick = on_tick
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopping: set[str] = set()
        # a restarted service cannot know how long it was away: every run active now gets one
        # full lease to be heard from again before its lease is judged
        self.judge_from = time.time() + settings.lease_s

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
        s = self.settings
        for run in crud.active_runs(self.engine):
            code = self._poll(run)
            now = time.time()
            if code not in (RUNNING, UNKNOWN):
                self.settle(run, int(code))
            elif (
                code is UNKNOWN
                and run.launcher == self.launcher.name
                and (result := crud.get_result(self.engine, run_id=run.id))
            ):
                # our launcher's run, but an earlier service instance started its process, so
                # its exit cannot be watched; it has ended, and its result says how
                self.settle(run, int((result.get("run") or {}).get("exit_code", EXIT_OK)))
            elif why := self._over_limit(run, now):
                if run.backend_id:
                    self.launcher.stop(run.backend_id, s.stop_grace_s)
                self._end(run, "failed", why)
            elif self._lease_expired(run, now):
                self._lose(run, code)
        self._stop_finished()
        if self.on_tick is not None:
            self.on_tick()
        if s.concurrency > 0:
            busy = sum(1 for r in crud.active_runs(self.engine) if r.launcher == self.launcher.name)
            for run, token in crud.claim_queued(
                self.engine,
                limit=s.concurrency - busy,
                launcher=self.launcher.name,
                refuse=lambda run: budget_refusal(self.engine, self.pricing, run),
            ):
                self.launch(run, token)

    def _end(self, run: Run, to: str, reason: str) -> None:
        """Settle an active run the scheduler itself decided about (limits, leases, launches)."""
        crud.set_status(
            self.engine,
            run_id=run.id,
            to=to,
            reason=reason,
            pricing=self.pricing,
            only_from=ACTIVE,
        )

    def _poll(self, run: Run):
        if run.launcher != self.launcher.name or not run.backend_id:
            return UNKNOWN
        return self.launcher.poll(run.backend_id)

    def _lose(self, run: Run, code) -> None:
        s = self.settings
        if run.backend_id and code is RUNNING:
            self.launcher.stop(run.backend_id, s.stop_grace_s)
        why = f"no heartbeat for {s.lease_s:.0f}s (lease expired)"
        if run.stop_reason:  # told to stop, and silent since: the decision stands
            self._end(run, "killed", f"{run.stop_reason}; the trainer did not exit ({why})")
            return
        crud.requeue_or_fail(
            self.engine,
            run_id=run.id,
            max_attempts=s.max_attempts,
            pricing=self.pricing,
            lost=True,
            reason=why,
        )

    def _over_limit(self, run: Run, now: float) -> str | None:
        """A reason to stop a run that ran too long or cost too much, or None."""
        s = self.settings
        if not run.started_at:
            return None
        if s.max_run_hours and now - run.started_at > 3600 * s.max_run_hours:
            return (
                f"time limit: running {(now - run.started_at) / 3600:.2f} h > {s.max_run_hours} h"
            )
        if s.max_run_usd and run.cost_usd + self.pricing.charge(now - run.started_at)[1] > (
            s.max_run_usd
        ):
            return f"cost limit: over ${s.max_run_usd:.2f} (PAX_MAX_RUN_USD)"
        return None

    def _lease_expired(self, run: Run, now: float) -> bool:
        if (
            now < self.judge_from
            and (run.started_at or 0) < self.judge_from - self.settings.lease_s
        ):
            return False  # active before this service started: its grace is not over
        if run.last_heartbeat is None:  # not heard from yet: still starting up
            return (
                run.started_at is not None and now - run.started_at > self.settings.startup_grace_s
            )
        return now - run.last_heartbeat > self.settings.lease_s

    def _stop_finished(self) -> None:
        """Cancelled runs whose process still runs: SIGTERM, then SIGKILL after the grace.
        (A run the kill rule stopped is told so in its next answer and exits by itself, with
        its final evaluation; it is not signalled.) Processes of runs that are no longer active
        are reaped, and what they left in their run directory is taken in."""
        for run in crud.runs_by_backend(self.engine, backend_ids=self.launcher.alive()):
            if run.status == "cancelled" and run.backend_id not in self.stopping:
                self.stopping.add(run.backend_id)
                self.launcher.stop(run.backend_id, self.settings.stop_grace_s)
        for run in crud.runs_by_backend(self.engine, backend_ids=self.launcher.exited()):
            if run.status in FINISHED:  # active runs are settled by the poll in tick()
                self.launcher.poll(run.backend_id)  # reaps it
                if run.run_dir:
                    reconcile_outbox(self.engine, run, Path(run.run_dir))
                    reconcile_result(self.engine, run, Path(run.run_dir))

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
            self._end(
                run, "failed", f"{self.launcher.name} launcher could not start the trainer: {e}"
            )
            return
        mount = self.settings.sky_bucket_mount
        if self.launcher.name == "skypilot" and mount:
            # the run lives in the checkpoint bucket (/pax/runs/<id> in the job): where this
            # host sees it, so an exited run's buffered metrics and result are taken in
            run_dir = Path(mount) / "runs" / str(run.id)
        crud.set_run_fields(self.engine, run_id=run.id, backend_id=backend_id, run_dir=str(run_dir))
        crud.set_status(
            self.engine,
            run_id=run.id,
            to="running",
            reason=f"started by the {self.launcher.name} launcher ({backend_id})",
            pricing=self.pricing,
            only_from=("launching",),
        )

    def settle(self, run: Run, code: int) -> None:
        """The trainer exited with `code`: reconcile its files, then decide the run's state."""
        run_dir = Path(run.run_dir or run_dir_for(self.settings, run))
        reconcile_outbox(self.engine, run, run_dir)
        metrics = reconcile_result(self.engine, run, run_dir)
        apply_exit(
            self.engine,
            self.pricing,
            run.id,
            code,
            self.settings.max_attempts,
            log=str(run_dir / "train.log"),
            metrics=metrics,
        )
