"""Launch errors wait; they don't fail the study (issue 27). Before, one `sky.jobs.launch`
that raised marked its run failed, and a plan of 20 runs ended `done` within seconds with 20
failures. Now an error that can pass (no capacity, a quota, the network) requeues the run with
back-off, and one a user must fix (SkyPilot missing, no cloud access) pauses the sweep with the
fix; `pax sweep resume` launches again. A FAILED_NO_RESOURCE job is a launch that waits, not
a crash, and SkyPilot's own failure reasons reach the run. The real scheduler and the real
SkyPilot launcher over the fake cloud adapter (tests/runner/launch/fake_sky.py)."""

import time

import pytest
import sky.exceptions as sky_errors

from runner.launch.sky_errors import classify
from runner.ledger import events
from runner.ledger.runs import get_run, run_list, set_run_fields
from runner.ledger.sweeps import create_sweep, get_sweep, resume_sweep
from tests.helpers import tiny_raw
from tests.runner.launch.fake_sky import (
    MIN,
    Clock,
    FakeCloud,
    attempts,
    beat,
    finish,
    make,
    run_for,
    sky_home,  # noqa: F401 (an autouse fixture)
    submit,
)
from trainer.config import validate


def plan(engine, tmp_path, n=4):
    """A sweep of `n` queued ranking runs, as a submitted plan leaves them."""
    rows = [
        {"cfg": validate(tiny_raw(tmp_path, name=f"c{i}")), "cell": f"c{i}", "launcher": "skypilot"}
        for i in range(n)
    ]
    sw = create_sweep(
        engine,
        name="plan",
        kind="plan",
        spec_json="{}",
        budget_usd=None,
        reports_root=str(tmp_path / "reports"),
        runs=rows,
        infeasible=[],
    )
    runs, _ = run_list(engine, sweep_id=sw.id)
    return sw, sorted(r["id"] for r in runs)


def statuses(engine, ids):
    return [get_run(engine, run_id=i).status for i in ids]


@pytest.mark.parametrize(
    "error, fix",
    [
        (ModuleNotFoundError("No module named 'sky'"), "pip install 'pax[cloud]'"),
        (sky_errors.NoCloudAccessError("No cloud is enabled"), "sky check"),
        (
            sky_errors.CloudError("Invalid credentials", "aws", "AuthFailure"),
            "pax sweep resume",
        ),
    ],
)
def test_a_permanent_launch_error_pauses_the_sweep_instead_of_failing_its_runs(
    tmp_path, error, fix
):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    sw, ids = plan(engine, tmp_path)
    cloud.raises = [error]
    sched.tick()
    paused = get_sweep(engine, sweep_id=sw.id)
    assert statuses(engine, ids) == ["queued"] * 4  # not one failed
    assert paused.status == "paused" and fix in paused.paused_reason
    held = [get_run(engine, run_id=i) for i in ids]
    assert all(r.attempt == 0 for r in held)  # no attempt used up
    assert all(r.launch_errors == 0 and r.not_before is None for r in held)  # held, no back-off
    assert cloud.tasks == []  # the rest of the batch was not launched into the same error
    run_for(sched, clock, 10 * MIN)
    assert statuses(engine, ids) == ["queued"] * 4 and cloud.tasks == []  # held while paused
    why = events.events(engine, run_id=ids[0], kinds=("state",))[-1]["reason"]
    assert fix in why

    resume_sweep(engine, sweep_id=sw.id)  # the user fixed it
    sched.tick()
    assert get_sweep(engine, sweep_id=sw.id).status == "active"
    assert statuses(engine, ids) == ["launching"] * 4 and len(cloud.tasks) == 4


def test_a_passing_launch_error_requeues_with_back_off_and_then_launches(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud, launch_retry_s=600, launch_retry_max_s=900)
    run = submit(engine, tmp_path)
    no_capacity = sky_errors.ResourcesUnavailableError("Failed to acquire resources in all zones")
    cloud.raises = [no_capacity, no_capacity]
    sched.tick()
    waiting = get_run(engine, run_id=run.id)
    assert waiting.status == "queued" and waiting.attempt == 0 and waiting.launch_errors == 1
    assert waiting.not_before > time.time() + 500  # not before the back-off
    (ev,) = [e for e in events.events(engine, run_id=run.id) if (e["data"] or {}).get("retry_at")]
    assert "ResourcesUnavailableError" in ev["reason"] and "retried in 600 s" in ev["reason"]
    sched.tick()
    assert cloud.tasks == [] and get_run(engine, run_id=run.id).status == "queued"  # waits

    set_run_fields(engine, run_id=run.id, not_before=0.0)  # the back-off passed
    sched.tick()
    again = get_run(engine, run_id=run.id)
    assert again.status == "queued" and again.launch_errors == 2
    # doubled, and capped
    assert "retried in 900 s" in events.events(engine, run_id=run.id)[-1]["reason"]

    set_run_fields(engine, run_id=run.id, not_before=0.0)
    sched.tick()  # capacity came back
    ok = get_run(engine, run_id=run.id)
    assert ok.status == "launching" and ok.attempt == 1 and len(cloud.tasks) == 1
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    sched.tick()
    running = get_run(engine, run_id=run.id)
    assert running.status == "running" and running.launch_errors == 0  # back-off reset


def test_no_capacity_from_skypilot_is_a_wait_not_a_crash(tmp_path):
    """A managed job that ended FAILED_NO_RESOURCE read as "trainer crashed (exit 1); see
    .../train.log; gave up after 3 attempts", with no train.log anywhere."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud, launch_retry_s=60)
    run = submit(engine, tmp_path)
    for job in (101, 102, 103, 104):  # more times than max_attempts
        sched.tick()
        assert get_run(engine, run_id=run.id).status == "launching"
        cloud.set(
            job,
            status="FAILED_NO_RESOURCE",
            failure_reason="Failed to acquire resources in all zones in us-east-1",
            region="us-east-1",
            end_at=clock(),
        )
        sched.tick()
        waiting = get_run(engine, run_id=run.id)
        assert waiting.status == "queued" and waiting.attempt == 0, waiting.exit_reason
        set_run_fields(engine, run_id=run.id, not_before=0.0)
    reason = events.events(engine, run_id=run.id)[-1]["reason"]
    assert "no capacity for L4/A100 spot in us-east-1" in reason
    assert "acquire resources" in reason and "train.log" not in reason
    assert attempts(engine, run.id) == []  # no attempt, no charge: it never ran
    sched.tick()
    cloud.set(105, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    run_for(sched, clock, 2 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    finish(engine, run.id)
    cloud.set(105, status="SUCCEEDED", end_at=clock())
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "succeeded" and done.attempt == 1


def test_a_failed_setup_shows_skypilots_reason_and_its_log_command(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    sched.tick()
    cloud.set(
        101, status="FAILED_SETUP", failure_reason="pull access denied for image", end_at=clock()
    )
    sched.tick()
    reasons = " | ".join(e["reason"] for e in events.events(engine, run_id=run.id))
    assert "FAILED_SETUP: pull access denied for image" in reasons
    assert "sky jobs logs 101" in reasons and "trainer crashed" not in reasons


def test_one_retry_budget_covers_skypilot_restarts_and_pax_attempts(tmp_path):
    """A crashing run trained up to 9 times: SkyPilot's 2 restarts on errors, times pax's 3
    attempts. SkyPilot now restarts on preemption only; PAX_MAX_ATTEMPTS is the one budget."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    for n in range(1, 10):
        sched.tick()
        if get_run(engine, run_id=run.id).status == "failed":
            break
        job = 100 + n
        cloud.set(job, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
        run_for(sched, clock, MIN, heartbeat=lambda: beat(engine, run.id, clock))
        cloud.set(job, status="FAILED", end_at=clock())
        sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "failed" and done.attempt == 3 and len(cloud.tasks) == 3
    assert all(
        r.job_recovery["max_restarts_on_errors"] == 0 for t in cloud.tasks for r in t.resources
    )


@pytest.mark.parametrize(
    "error, passes",
    [
        (sky_errors.ResourcesUnavailableError("no capacity"), True),
        (sky_errors.CloudError("Quota exceeded for GPUS_ALL_REGIONS", "gcp", "QUOTA"), True),
        (ConnectionError("api server unreachable"), True),
        (sky_errors.NoCloudAccessError("no cloud"), False),
        (sky_errors.StorageBucketGetError("bucket pax-1 does not exist"), False),
        (ImportError("No module named 'sky'"), False),
        (ValueError("bad accelerator"), False),
    ],
)
def test_skypilot_errors_are_told_apart(error, passes):
    got = classify(error)
    assert got.passes is passes and str(error) in got.reason
