"""What a launch that did not happen does to its run: a launch error never fails a run by itself.
One that passes (no capacity, a quota, the network, a cloud job that found no machines) puts
the run back in the queue with back-off; one a user must fix (SkyPilot missing, no cloud
access) pauses the run's sweep with the fix, so a study waits instead of ending in failures."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from runner.launch.base import JobState, LaunchError
from runner.ledger import attempts, lifecycle
from runner.ledger.models import Run
from runner.ledger.sweeps import pause_sweep
from runner.settings import Settings

log = logging.getLogger("pax.scheduler")


def back_off(settings: Settings, errors_in_a_row: int) -> float:
    """Seconds before the next launch: PAX_LAUNCH_RETRY_S doubled per error in a row, capped."""
    return min(settings.launch_retry_max_s, settings.launch_retry_s * 2 ** min(errors_in_a_row, 20))


def retry_launch(
    engine: Engine, settings: Settings, run: Run, reason: str, only_from=("launching",)
) -> None:
    wait = back_off(settings, run.launch_errors)
    lifecycle.unclaim(
        engine,
        run_id=run.id,
        reason=f"{reason}; launch retried in {wait:.0f} s",
        retry_in=wait,
        only_from=only_from,
    )


def launch_failed(
    engine: Engine, settings: Settings, run: Run, err: LaunchError, fail: Callable[[str], None]
) -> bool | None:
    """None when the run will be retried; False when a user must act (its sweep is paused; a
    run of no sweep fails through `fail`, with the fix in its reason)."""
    if err.passes:
        retry_launch(engine, settings, run, err.reason)
        return None
    if run.sweep_id is None:
        fail(err.reason)
        return False
    lifecycle.unclaim(engine, run_id=run.id, reason=err.reason, retry_in=None)
    if pause_sweep(engine, sweep_id=run.sweep_id, reason=err.reason):
        log.error("sweep %s paused: %s", run.sweep_id, err.reason)
    return False


def launch_returned(
    engine: Engine, settings: Settings, run: Run, st: JobState, fail: Callable[[str], None]
) -> bool:
    """Whether `st` is the outcome of a launch that ran off the scheduler's tick, now taken in:
    the job's real id recorded, or its error waiting (or pausing the sweep) as above."""
    if st.job_id is not None:
        attempts.record_launch(
            engine, run_id=run.id, backend_id=st.job_id, run_dir=run.run_dir or ""
        )
        return True
    if st.launch_error is not None:
        launch_failed(engine, settings, run, st.launch_error, fail=fail)
        return True
    return False
