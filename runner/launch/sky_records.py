"""What a SkyPilot managed-job record says, as the scheduler needs it: the phase (waiting,
running, recovering, exited and how), the recoveries, and the VM time of the current attempt,
priced from provisioning to tear-down (SkyPilot's `submitted_at`, `start_at`,
`job_duration`, `last_recovered_at` and `end_at`; sky/jobs/state.py says what each holds)."""

from __future__ import annotations

from runner.launch.base import EXITED, NOT_OURS, PENDING, RECOVERING, RUNNING, JobState
from runner.launch.sky_errors import failure_cause
from runner.ledger.attempts import Usage

PHASES = {
    "PENDING": PENDING,
    "SUBMITTED": PENDING,
    "STARTING": PENDING,
    "RUNNING": RUNNING,
    "WINDING_DOWN": RUNNING,
    "CANCELLING": RUNNING,
    "RECOVERING": RECOVERING,
}
# terminal states -> the exit the scheduler settles (the run script reports 2 and 3 itself)
EXITS = {
    "SUCCEEDED": 0,
    "CANCELLED": 75,
    "FAILED": 1,
    "FAILED_SETUP": 1,
    "FAILED_PRECHECKS": 2,
    "FAILED_NO_RESOURCE": 1,
    "FAILED_CONTROLLER": 1,
}


def state_of(rec: dict | None, use_spot: bool, accelerators=()) -> JobState:
    """A SkyPilot managed-job record as the scheduler needs it."""
    if rec is None:
        return NOT_OURS
    status = str(rec.get("status") or "").split(".")[-1]
    gpus = rec.get("accelerators") or {}
    usage = Usage(
        accelerator=next(iter(gpus), None),
        spot=use_spot if gpus else None,
        resources={k: rec.get(k) for k in ("cloud", "region", "cluster_resources") if rec.get(k)},
        seconds=_segment_seconds(rec),
    )
    recoveries = int(rec.get("recovery_count") or 0)
    detail = rec.get("failure_reason") or rec.get("details")
    # before the latest recovery: the first machines' provisioning and every running stretch
    prior = _provisioning_seconds(rec) + float(rec.get("job_duration") or 0.0)
    if status in EXITS:
        return JobState(
            EXITED,
            code=EXITS[status],
            recoveries=recoveries,
            usage=usage,
            ended_outside=status == "CANCELLED",
            detail=detail,
            prior_seconds=prior,
            cause=failure_cause(status, rec, accelerators, use_spot),
            never_ran=status == "FAILED_NO_RESOURCE",
        )
    return JobState(
        PHASES.get(status, PENDING),
        recoveries=recoveries,
        usage=usage,
        detail=detail,
        prior_seconds=prior,
    )


def _provisioning_seconds(rec: dict) -> float:
    """From when SkyPilot's controller began provisioning the first machines (`submitted_at`:
    STARTING) to the job's first RUNNING (`start_at`): paid for, though not training."""
    start, asked = rec.get("start_at"), rec.get("submitted_at")
    return max(0.0, float(start) - float(asked)) if start and asked else 0.0


def _segment_seconds(rec: dict) -> float | None:
    """The VM time of the job's current attempt, so that its attempts add up to the job's whole
    time from provisioning to tear-down: the first from provisioning; after a recovery, the
    time since the last stretch SkyPilot counted (`job_duration` holds the running stretches
    before the latest recovery), so the new machines' provisioning is paid too. Until the job's
    end, or now as SkyPilot last saw it; None before it first ran (no machine to pay for)."""
    start = rec.get("start_at")
    end = rec.get("end_at") or rec.get("now")
    if not start or not end:
        return None
    if not int(rec.get("recovery_count") or 0):
        return max(0.0, float(end) - float(start) + _provisioning_seconds(rec))
    return max(0.0, float(end) - float(start) - float(rec.get("job_duration") or 0.0))
