"""The in-process scheduler: claim queued runs, launch them, watch their jobs, settle exits.

One loop, every `tick_s`:
  1) observe every active run's job, one call per launcher, at most every `poll_s` (a cloud
     every PAX_SKY_POLL_S, not every tick)
  2) judge each run by what its launcher sees, never by a lease alone:
     - exited: take in what the trainer left in its folder (runner.launch.run_dir), then
       `lifecycle.apply_exit`: succeeded / killed / failed, or requeued (crash, preemption); a
       job cancelled outside pax is `cancelled`
     - recovered onto new machines by the platform: a new attempt, with its own start time
     - waiting for machines or recovering: nothing is judged (no lease, no cancel)
     - running: time and cost limits, then the lease (start-up grace counts from running);
       a run told to stop that falls silent is killed, not requeued
  3) stop what should no longer run (cancelled runs whose process is alive)
  4) the tick hook (the study's promotion and sweep closing)
  5) claim queued runs for each launcher (priority, then age) up to its capacity, and start them

A restarted service gives every run that was active one full lease before judging it, and
settles first what its launchers can see.
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

from runner.cost import Pricing, budget_refusal
from runner.launch import retries
from runner.launch.base import (
    EXITED,
    NOT_OURS,
    PENDING,
    RECOVERING,
    RUNNING,
    UNKNOWN,
    JobState,
    Launcher,
    LaunchSpec,
    run_dir_under,
)
from runner.launch.limits import lease_expired, over_limit
from runner.launch.run_dir import RunDirs
from runner.ledger import attempts, lifecycle
from runner.ledger.attempts import Usage
from runner.ledger.leader import Leadership
from runner.ledger.models import ACTIVE, FINISHED, Run
from runner.ledger.results import get_result
from runner.ledger.runs import (
    active_count,
    active_runs,
    cancelled_with_jobs,
    get_run,
    run_ref,
    runs_by_backend,
)
from runner.settings import Settings
from trainer.exits import EXIT_OK

log = logging.getLogger("pax.scheduler")


def run_dir_for(settings: Settings, run: Run) -> Path:
    return run_dir_under(settings.runs_root, run.id, run.name)


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        launchers: Launcher | list[Launcher],
        pricing: Pricing,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        capacity: dict[str, int] | None = None,
        on_points: Callable | None = None,
    ):
        launchers = launchers if isinstance(launchers, list) else [launchers]
        self.engine = engine
        self.settings = settings
        self.launchers = {launcher.name: launcher for launcher in launchers}
        self.pricing = pricing
        self.on_tick = on_tick
        self.clock = clock
        self.dirs = RunDirs()  # what was taken in from each run's folder
        # what a posted point meets (the kill rule), for points read from run folders too
        self.on_points = on_points
        # runs at once per launcher: the local one by PAX_CONCURRENCY, a cloud by its own
        self.capacity = capacity or {name: settings.concurrency for name in self.launchers}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopping: set[str] = set()
        self.cancelled_by_us: set[str] = set()  # jobs pax itself asked to stop
        self.observed: dict[tuple[int, int], Usage] = {}  # last usage written, per attempt
        self.polled_at: dict[str, float] = {}  # when each launcher's jobs were last observed
        # a restarted service cannot know how long it was away: every run active now gets one
        # full lease to be heard from again before its lease is judged
        self.judge_from = clock() + settings.lease_s
        # several services on one PostgreSQL ledger: only the leader schedules
        self.leadership = Leadership(engine)
        self.leading = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pax-scheduler")
        self.thread.start()

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=10)
        self.leadership.release()

    def _lead(self) -> bool:
        """Whether to tick now. A service that becomes the leader gives every active run one
        full lease to be heard from before judging it, as a restarted service does."""
        held = self.leadership.held()
        if held and not self.leading:
            self.judge_from = self.clock() + self.settings.lease_s
            if self.leadership.shared:
                log.warning("this service now runs the scheduler (leader of the ledger)")
        elif self.leading and not held:
            log.warning("this service no longer runs the scheduler (leadership lost)")
        self.leading = held
        return held

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self._lead():
                    self.tick()
            except Exception:  # the loop must survive anything one tick meets
                log.error("scheduler tick failed:\n%s", traceback.format_exc())
            self.stop_event.wait(self.settings.tick_s)

    # ------------------------------------------------------------ one pass

    def tick(self) -> None:
        active = self._due(active_runs(self.engine), self.clock())
        states = self._observe(active)
        for run in active:
            try:
                self._judge(run, states.get(run.id, NOT_OURS), self.clock())
            except Exception:  # one run's trouble never stops the others
                log.error("judging run %s failed:\n%s", run.id, traceback.format_exc())
        self._stop_finished()
        if self.on_tick is not None:
            self.on_tick()
        for launcher in self.launchers.values():
            self._claim_and_launch(launcher)

    def _due(self, active: list[Run], now: float) -> list[Run]:
        """The active runs to observe and judge in this tick: a launcher's runs at most every
        `poll_s` seconds (a cloud is polled every few seconds, not every tick)."""
        due = {
            name
            for name, lr in self.launchers.items()
            if now - self.polled_at.get(name, float("-inf")) >= lr.poll_s
        }
        self.polled_at.update(dict.fromkeys(due, now))
        return [r for r in active if r.launcher not in self.launchers or r.launcher in due]

    def _observe(self, active: list[Run]) -> dict[int, JobState]:
        """Each run's job state, one observe() per launcher. A launcher that cannot be asked
        this tick (a cloud API error) leaves its runs unjudged until the next."""
        out: dict[int, JobState] = {}
        for name, launcher in self.launchers.items():
            runs = [r for r in active if r.launcher == name and r.backend_id]
            if not runs:
                continue
            try:
                seen = launcher.observe([r.backend_id for r in runs])
            except Exception as e:
                log.warning("could not observe %s jobs (%s); judging them next tick", name, e)
                out.update({r.id: JobState(PENDING, detail=str(e)) for r in runs})
                continue
            out.update({r.id: seen.get(r.backend_id, NOT_OURS) for r in runs})
        return out

    def _judge(self, run: Run, st: JobState, now: float) -> None:
        launcher = self.launchers.get(run.launcher or "")
        ended = lambda why: self._end(run, "failed", why)  # noqa: E731 (one use, just below)
        if retries.launch_returned(self.engine, self.settings, run, st, ended):
            return  # a launch off the tick came back: its job id, or an error that waits
        if launcher is not None and launcher.heard_through_files and run.run_dir:
            run = self._hear_through_files(run, now)
        recorded = attempts.recoveries_recorded(
            self.engine, run_id=run.id, backend_id=run.backend_id
        )
        if st.recoveries > recorded:
            attempts.record_recovery(
                self.engine,
                run_id=run.id,
                attempt=run.attempt + st.recoveries - recorded,
                reason=f"{run.launcher} recovered the job onto new machines "
                f"(recovery {st.recoveries}{': ' + st.detail if st.detail else ''})",
                pricing=self.pricing,
                prior_seconds=st.prior_seconds,
                t=now,
            )
            run = get_run(self.engine, run_id=run.id)
        if st.usage is not None and st.phase != EXITED:
            # after any recovery: what the cloud reports now is the new attempt's GPU
            self._note_usage(run, st.usage)
        if st.phase == EXITED:
            if st.never_ran:  # no machines anywhere: a launch that waits, not a crash
                retries.retry_launch(
                    self.engine,
                    self.settings,
                    run,
                    st.cause or "the job never started",
                    only_from=ACTIVE,
                )
            elif st.ended_outside and run.backend_id not in self.cancelled_by_us:
                self._end(
                    run, "cancelled", f"{run.launcher}: the job was cancelled outside pax", st.usage
                )
            else:
                self.settle(run, st.code if st.code is not None else 1, st.usage, st.cause)
            return
        if st.phase in (PENDING, RECOVERING):
            return  # waiting for machines, or being moved: the platform's job, not a lease's
        if st.phase == RUNNING and run.running_since is None:
            lifecycle.mark_running(
                self.engine,
                run_id=run.id,
                since=now,
                reason=f"{run.launcher} reports the job running ({run.backend_id})",
            )
            run.running_since = now
        if (
            st.phase == UNKNOWN
            and run.launcher in self.launchers
            and (result := get_result(self.engine, run_id=run.id))
        ):
            # our launcher's run, but an earlier service instance started its process, so its
            # exit cannot be watched; it has ended, and its result says how
            self.settle(run, int((result.get("run") or {}).get("exit_code", EXIT_OK)))
        elif why := over_limit(self.engine, self.settings, run, now):
            self._stop(run)
            self._end(run, "failed", why)
        elif lease_expired(self.settings, run, now, self.judge_from):
            self._lose(run, st)

    def _hear_through_files(self, run: Run, now: float) -> Run:
        """A job without inbound access speaks through its folder: take in what it wrote, let
        its points meet the kill rule as posted ones do, and answer a stop through the folder."""
        got = self.dirs.take_in(
            self.engine, run, run.run_dir, now=now, heartbeats=True, pricing=self.pricing
        )
        if got["new"] and self.on_points is not None:
            self.on_points(self.engine, run_ref(self.engine, run_id=run.id), got["new"])
        run = get_run(self.engine, run_id=run.id)
        if run.stop_reason:
            self.dirs.tell_stop(run.run_dir, run.stop_reason)
        return run

    def _note_usage(self, run: Run, usage: Usage) -> None:
        key = (run.id, run.attempt)
        seen = self.observed.get(key)
        if seen is None or (seen.accelerator, seen.spot) != (usage.accelerator, usage.spot):
            attempts.observe_attempt(self.engine, run_id=run.id, usage=usage, pricing=self.pricing)
            self.observed[key] = usage

    def _end(self, run: Run, to: str, reason: str, usage: Usage | None = None) -> None:
        """Settle an active run the scheduler itself decided about (limits, leases, launches)."""
        lifecycle.set_status(
            self.engine,
            run_id=run.id,
            to=to,
            reason=reason,
            pricing=self.pricing,
            usage=usage,
            only_from=ACTIVE,
        )

    def _stop(self, run: Run) -> None:
        launcher = self.launchers.get(run.launcher or "")
        if launcher is not None and run.backend_id:
            self.cancelled_by_us.add(run.backend_id)
            launcher.stop(run.backend_id, self.settings.stop_grace_s)

    def _lose(self, run: Run, st: JobState) -> None:
        s = self.settings
        why = f"no heartbeat for {s.lease_s:.0f}s (lease expired)"
        if run.stop_reason:  # told to stop, and silent since: the decision stands
            if st.phase == RUNNING:
                self._stop(run)
            self._end(run, "killed", f"{run.stop_reason}; the trainer did not exit ({why})")
            return
        lost = lifecycle.requeue_or_fail(
            self.engine,
            run_id=run.id,
            max_attempts=s.max_attempts,
            pricing=self.pricing,
            lost=True,
            reason=why,
            silent_since=(run.attempt, run.last_heartbeat),
        )
        # Stopped only once the ledger has decided: a heartbeat that landed after this tick
        # read the run keeps it (None), and its trainer must not be signalled either, or it
        # dies as a "crash" of a run whose lease was never lost.
        if lost is not None and st.phase == RUNNING:
            self._stop(run)

    def _stop_finished(self) -> None:
        """Cancelled runs whose process still runs: SIGTERM, then SIGKILL after the grace.
        (A run the kill rule stopped is told so in its next answer and exits by itself, with
        its final evaluation; it is not signalled.) Processes of runs that are no longer active
        are reaped, and what they left in their run directory is taken in."""
        for launcher in self.launchers.values():
            for run in runs_by_backend(self.engine, backend_ids=launcher.alive()):
                if run.status == "cancelled" and run.backend_id not in self.stopping:
                    self.stopping.add(run.backend_id)
                    launcher.stop(run.backend_id, self.settings.stop_grace_s)
            for run in runs_by_backend(self.engine, backend_ids=launcher.exited()):
                if run.status in FINISHED:  # active runs are settled by the tick's judgement
                    launcher.observe([run.backend_id])  # reaps it
                    if run.run_dir:  # what it left after its run was finished
                        self.dirs.take_in(
                            self.engine, run, run.run_dir, now=self.clock(), heartbeats=False
                        )
            if not launcher.tracks_processes:
                # a run cancelled in the ledger is cancelled where its job runs too (once)
                since = self.clock() - 3600
                for run in cancelled_with_jobs(self.engine, launcher=launcher.name, since=since):
                    if run.backend_id not in self.cancelled_by_us:
                        self._stop(run)

    # ------------------------------------------------------------ launching

    def _claim_and_launch(self, launcher: Launcher) -> None:
        free = self.capacity.get(launcher.name, 0) - active_count(
            self.engine, launcher=launcher.name
        )
        if free <= 0:
            return
        cap_on = launcher.costliest()  # a cloud: its dearest GPU
        try:
            claimed = lifecycle.claim_queued(
                self.engine,
                limit=free,
                launcher=launcher.name,
                kinds=launcher.kinds,
                takes_unassigned=launcher.takes_unassigned,
                placement=launcher.placement(),
                pricing=self.pricing,
                refuse=lambda run: budget_refusal(
                    self.engine, self.pricing, run, cap_on, jobs=1 if cap_on else 0
                ),
            )
        except ValueError as e:  # no price for where it would train: nothing is claimed
            log.error("%s launcher: %s", launcher.name, e)
            return
        paused: set[int] = set()  # sweeps a launch error paused in this batch
        for run, token in claimed:
            if run.sweep_id in paused:
                lifecycle.unclaim(
                    self.engine,
                    run_id=run.id,
                    reason=f"not launched: sweep {run.sweep_id} was paused",
                    retry_in=None,
                )
            elif self.launch(run, token, launcher) is False and run.sweep_id is not None:
                paused.add(run.sweep_id)

    def launch(self, run: Run, token: str, launcher: Launcher | None = None) -> bool | None:
        """Start a claimed run. False when its launcher refused in a way a user must fix (its
        sweep is paused); None when it will be retried, or could not be prepared."""
        launcher = launcher or next(iter(self.launchers.values()))
        # the local folder the launcher starts from (a cloud's own folder is in its bucket,
        # run_dir_url below): always the same one for a run, so a retry resumes there
        try:
            run_dir = run_dir_for(self.settings, run)
            run_dir.mkdir(parents=True, exist_ok=True)
            config_path = run_dir / "spec.yaml"
            config_path.write_text(yaml.safe_dump({"base": json.loads(run.spec_json)}))
        except (OSError, ValueError) as e:  # a symlinked or unwritable folder: said, not stuck
            self._end(run, "failed", f"cannot prepare the run's folder: {e}")
            return
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
            backend_id = launcher.start(spec)
        except Exception as e:  # no capacity, a quota, missing credentials, a bad image
            err = launcher.launch_error(e)
            return retries.launch_failed(
                self.engine, self.settings, run, err, fail=lambda why: self._end(run, "failed", why)
            )
        attempts.record_launch(
            self.engine,
            run_id=run.id,
            backend_id=backend_id,
            run_dir=launcher.run_dir_url(run.id, run_dir),
            device=launcher.device_of(backend_id),  # slots on a GPU
        )
        if launcher.starts_pending:  # running once the platform says so (observe)
            return True
        lifecycle.mark_running(
            self.engine,
            run_id=run.id,
            reason=f"started by the {launcher.name} launcher ({backend_id})",
        )
        return True

    def settle(
        self, run: Run, code: int, usage: Usage | None = None, cause: str | None = None
    ) -> None:
        """The trainer exited with `code`: take in what it left in its folder, then decide
        the run's state (the same path for every launcher)."""
        url = run.run_dir or str(run_dir_for(self.settings, run))
        launcher = self.launchers.get(run.launcher or "")
        heard = launcher is not None and launcher.heard_through_files
        self.dirs.take_in(
            self.engine, run, url, now=self.clock(), heartbeats=heard, pricing=self.pricing
        )
        reported = self.dirs.exit_code(url)
        if code == EXIT_OK and reported is not None:
            code = reported  # a cloud job ends clean after reporting 2 or 3 (no restarts)
        lifecycle.apply_exit(
            self.engine,
            run_id=run.id,
            code=code,
            max_attempts=self.settings.max_attempts,
            pricing=self.pricing,
            log=f"{url}/train.log",
            metrics=get_result(self.engine, run_id=run.id),
            usage=usage,
            cause=cause,
        )
