"""SkyPilot managed jobs judged by SkyPilot's own states: the real scheduler and the real
SkyPilot launcher (real sky.Task objects) over a fake adapter that stands for the cloud, on a
real SQLite ledger, with a clock the test moves. Each sequence asserts no spurious cancel, the
attempts recorded, and the cost charged."""

import json
import os

import pytest

from runner.cost import Pricing
from runner.launch.scheduler import Scheduler
from runner.launch.skypilot import SkyOptions
from runner.ledger import events
from runner.ledger.results import get_result
from runner.ledger.runs import create_run, get_run
from runner.ledger.stops import request_stop
from tests.helpers import tiny_raw
from tests.runner.launch.fake_sky import (
    IMAGE,
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


def test_slow_provisioning_is_never_cancelled_and_grace_counts_from_running(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()  # claimed and launched
    job = 101
    assert get_run(engine, run_id=run.id).backend_id == str(job)
    run_for(sched, clock, 10 * MIN)  # PENDING for 10 min: far past lease and start-up grace
    t_provision = clock()
    cloud.set(job, status="STARTING", submitted_at=t_provision)  # the controller provisions
    run_for(sched, clock, 5 * MIN)
    # still launching: the run shows running only once SkyPilot says RUNNING (issue 27)
    assert cloud.cancelled == [] and get_run(engine, run_id=run.id).status == "launching"
    start = clock()
    cloud.set(job, status="RUNNING", start_at=start, accelerators={"A100": 1}, cloud="gcp")
    run_for(sched, clock, 2 * MIN)  # within the start-up grace, counted from RUNNING
    assert cloud.cancelled == [] and get_run(engine, run_id=run.id).running_since >= start
    run_for(sched, clock, 5 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    finish(engine, run.id)
    cloud.set(job, status="SUCCEEDED", end_at=clock())
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "succeeded" and done.attempt == 1 and cloud.cancelled == []
    (a,) = attempts(engine, run.id)
    assert a["accelerator"] == "A100" and a["outcome"] == "succeeded"
    price = Pricing().hourly("A100", True)
    # the VM from provisioning to tear-down (the 10 PENDING minutes had no VM), not only running
    assert a["seconds"] == pytest.approx(clock() - t_provision) and t_provision < start
    assert done.cost_usd == pytest.approx(a["seconds"] / 3600 * price) and done.cost_usd > 0


def test_a_preemption_is_recovered_by_skypilot_and_recorded_as_a_new_attempt(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    job = 101
    t_provision = clock()
    clock.advance(3 * MIN)  # provisioning: paid, though nothing trains yet
    t0 = clock()
    cloud.set(job, status="RUNNING", submitted_at=t_provision, start_at=t0, accelerators={"L4": 1})
    run_for(sched, clock, 20 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    ran = clock() - t0
    cloud.set(job, status="RECOVERING")  # preempted: 5 minutes of no heartbeats at all
    run_for(sched, clock, 5 * MIN)
    assert cloud.cancelled == [] and get_run(engine, run_id=run.id).status == "running"
    t1 = clock()
    cloud.set(
        job,
        status="RUNNING",
        recovery_count=1,
        job_duration=ran,
        last_recovered_at=t1,
        accelerators={"A100": 1},
    )
    sched.tick()
    run_for(sched, clock, 10 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    finish(engine, run.id)
    cloud.set(job, status="SUCCEEDED", end_at=clock())
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "succeeded" and done.attempt == 2 and cloud.cancelled == []
    first, second = attempts(engine, run.id)
    assert first["outcome"] == "preempted" and first["accelerator"] == "L4"
    # the first machines: their provisioning and SkyPilot's running time before the recovery
    assert first["seconds"] == pytest.approx(3 * MIN + ran)
    assert second["started_at"] == pytest.approx(t1) and second["accelerator"] == "A100"
    # the second: the new machines' provisioning (the 5 recovering minutes) and their running
    assert second["seconds"] == pytest.approx(clock() - t0 - ran)
    assert first["seconds"] + second["seconds"] == pytest.approx(clock() - t_provision)
    # each attempt at the price of the GPU it actually ran on
    assert first["cost_usd"] == pytest.approx((3 * MIN + ran) / 3600 * Pricing().hourly("L4", True))
    assert second["cost_usd"] == pytest.approx(
        second["seconds"] / 3600 * Pricing().hourly("A100", True)
    )
    assert done.cost_usd == pytest.approx(first["cost_usd"] + second["cost_usd"])
    recovered = events.events(engine, run_id=run.id, kinds=("attempt",))
    assert len(recovered) == 1 and "recovered" in recovered[0]["reason"]


def test_a_service_restart_mid_run_cancels_nothing(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, launcher = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    run_for(sched, clock, 5 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    clock.advance(3 * MIN)  # the service was down for three leases; the job ran on
    again = Scheduler(
        engine, sched.settings, [launcher], sched.pricing, clock=clock, capacity={"skypilot": 8}
    )
    again.tick()  # observes SkyPilot first; grants one lease of grace to every active run
    assert cloud.cancelled == [] and get_run(engine, run_id=run.id).status == "running"
    run_for(again, clock, 5 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    assert cloud.cancelled == [] and get_run(engine, run_id=run.id).attempt == 1


def test_a_heartbeat_landing_while_the_lease_is_judged_leaves_the_job_running(tmp_path):
    """The tick read a stale heartbeat, then the trainer spoke before the requeue: the ledger
    keeps the run, and the job is not cancelled either (it used to be: stopped first, then
    kept, so the trainer died as a "crash" of a run whose lease was never lost)."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    run_for(sched, clock, 2 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    clock.advance(2 * MIN)  # silent for two leases, as far as the next read can tell
    cloud.on_queue = lambda: beat(engine, run.id, clock)  # speaks while SkyPilot is asked
    sched.tick()
    cloud.on_queue = None
    kept = get_run(engine, run_id=run.id)
    assert kept.status == "running" and kept.attempt == 1
    assert cloud.cancelled == []
    assert not [e for e in events.events(engine, run_id=run.id) if e["to_status"] == "lost"]
    clock.advance(2 * MIN)  # and silent for real now: lost, requeued, and only then stopped
    sched.tick()
    assert cloud.cancelled == [101]
    assert any(
        e["to_status"] == "lost" and "lease expired" in e["reason"]
        for e in events.events(engine, run_id=run.id)
    )


def test_a_job_cancelled_in_skypilot_is_cancelled_not_preempted(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    run_for(sched, clock, 2 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    cloud.jobs[101]["status"] = "CANCELLED"  # a user, in SkyPilot
    cloud.jobs[101]["end_at"] = clock()
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "cancelled" and "cancelled outside pax" in done.exit_reason
    assert done.attempt == 1 and done.cost_usd > 0


def test_a_kill_rule_exit_is_final_not_retried(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    bucket = tmp_path / "bucket"
    engine, sched, _ = make(tmp_path, clock, cloud, bucket=bucket)
    run = submit(engine, tmp_path)
    sched.tick()
    cloud.set(101, status="RUNNING", start_at=clock(), accelerators={"L4": 1})
    run_for(sched, clock, 2 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    request_stop(engine, run_id=run.id, kind="kill", reason="kill rule: trailed", evidence={})
    run_for(sched, clock, 2 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    # the run script reported exit 3 beside the run and ended clean (no SkyPilot restart)
    run_dir = bucket / "runs" / str(run.id)
    run_dir.mkdir(parents=True)
    (run_dir / "exit.json").write_text(json.dumps({"code": 3}))
    cloud.set(101, status="SUCCEEDED", end_at=clock())
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "killed" and done.exit_reason == "kill rule: trailed"
    assert done.attempt == 1 and cloud.cancelled == []


def test_a_launch_error_fails_that_run_not_the_tick(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock, fail_launch=f"-{1}")  # the first run's launch raises
    engine, sched, _ = make(tmp_path, clock, cloud)
    bad, good = submit(engine, tmp_path, "emb25"), submit(engine, tmp_path, "emb45")
    sched.tick()
    failed = get_run(engine, run_id=bad.id)
    assert failed.status == "failed" and "AWS credentials" in failed.exit_reason
    launched = get_run(engine, run_id=good.id)  # launched in that tick
    assert launched.status == "launching" and launched.backend_id is not None


def test_skypilot_is_asked_once_per_poll_not_every_tick(tmp_path):
    """SkyPilot (and the bucket) were asked every 0.5 s tick: one request to its API server per
    tick, forever. Now once per PAX_SKY_POLL_S, in one call for every job."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud, poll_s=10.0)
    runs = [submit(engine, tmp_path, f"r{i}") for i in range(5)]
    sched.tick()  # launched: the next poll is due 10 s after this one
    clock.advance(10.0)
    sched.tick()
    assert cloud.queue_calls == 1  # all five jobs in one call
    for _ in range(19):  # 19 ticks of 0.5 s: within one poll
        clock.advance(0.5)
        sched.tick()
    assert cloud.queue_calls == 1 and len(runs) == 5
    clock.advance(0.5)
    sched.tick()
    assert cloud.queue_calls == 2


def test_a_gpu_without_a_price_is_refused_at_launch(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, launcher = make(tmp_path, clock, cloud)
    launcher.opts = SkyOptions(image=IMAGE, accelerators=("L40S",))  # known, but no price
    run = submit(engine, tmp_path)
    sched.tick()
    done = get_run(engine, run_id=run.id)
    assert done.status == "failed" and "no price" in done.exit_reason and cloud.tasks == []


class LocalCloud(FakeCloud):
    """A cloud with no inbound connection to the service: `launch` runs the task's own run
    script (the shipped template, filled by the real launcher) here, with the bucket a local
    folder where the script says /pax, and the job's env and secrets as SkyPilot would set
    them. No runner URL reaches the job: the bucket is all the service hears."""

    def __init__(self, clock, bucket):
        super().__init__(clock)
        self.bucket, self.procs = bucket, {}

    def launch(self, task, name):
        import subprocess
        import sys

        from tests.conftest import ROOT

        job = super().launch(task, name)
        script = task.run.replace("/pax", str(self.bucket))
        env = {
            **os.environ,
            "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            **task.envs,
            **{k: getattr(v, "get_secret_value", lambda v=v: v)() for k, v in task.secrets.items()},
        }
        assert "PAX_RUNNER_URL" not in env
        self.procs[job] = subprocess.Popen(["bash", "-c", script], env=env, cwd=self.bucket)
        self.set(job, status="RUNNING", start_at=self.clock(), accelerators={"L4": 1})
        return job

    def queue(self, job_ids):
        for job, proc in self.procs.items():
            if proc.poll() is not None and self.jobs[job]["status"] == "RUNNING":
                status = "SUCCEEDED" if proc.returncode == 0 else "FAILED"
                self.set(job, status=status, end_at=self.clock())
        return super().queue(job_ids)


@pytest.mark.slow
def test_no_inbound_a_run_is_heard_through_the_bucket_alone(tmp_path, tokenized_dir):
    """The trainer never reaches the service; it trains, and the run ends succeeded with every
    point it logged in the ledger exactly once, its result, its heartbeats and its cost."""
    import time

    from runner.launch.run_dir import RunDirs
    from tests.helpers import wait_until

    bucket = tmp_path / "bucket"
    manifest = bucket / "cache" / "data" / "wikitext-2" / "DATASET_MANIFEST.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")  # the bucket's data cache is warm: the script skips the download
    cloud = LocalCloud(time.time, bucket)
    engine, sched, launcher = make(tmp_path, time.time, cloud, bucket=bucket)
    launcher.opts = SkyOptions(image=IMAGE, accelerators=("L4",), vocabs="")
    run = create_run(
        engine,
        cfg=validate(tiny_raw(tokenized_dir.parent, max_tokens=24 * 8 * 64)),
        launcher="skypilot",
    )

    def settled():
        sched.tick()
        return get_run(engine, run_id=run.id).status not in ("queued", "launching", "running")

    wait_until(settled, 180, "the run settled from what the bucket holds", every=0.3)
    done = get_run(engine, run_id=run.id)
    assert done.status == "succeeded", done.exit_reason
    run_dir = bucket / "runs" / str(run.id)
    parts = sorted((run_dir / "outbox").glob("*.jsonl"))  # closed files: a mount uploads them
    assert parts and not (run_dir / "outbox.jsonl").exists()
    logged = {
        (p["name"], p["step"])
        for part in parts
        for p in map(json.loads, part.read_text().splitlines())
    }
    from sqlalchemy import text

    with engine.connect() as c:
        rows = c.execute(
            text("SELECT name, step FROM metric_points WHERE run_id = :r"), {"r": run.id}
        ).all()
    assert len(rows) == len(logged) == len(set(rows)) and set(map(tuple, rows)) == logged
    assert ("train/loss", 24) in logged and done.tokens_seen == 24 * 8 * 64
    assert get_result(engine, run_id=run.id)["run"]["status"] == "succeeded"
    assert json.loads((run_dir / "exit.json").read_text())["code"] == 0
    # a second reader (a restarted service) taking the whole outbox in again adds nothing
    RunDirs().take_in(engine, done, done.run_dir, now=time.time(), heartbeats=True)
    assert done.run_dir == f"{bucket}/runs/{run.id}"  # the folder read is the bucket's
    with engine.connect() as c:
        n = c.execute(
            text("SELECT COUNT(*) FROM metric_points WHERE run_id = :r"), {"r": run.id}
        ).scalar()
    assert n == len(logged)
    (a,) = attempts(engine, run.id)
    assert a["accelerator"] == "L4" and a["outcome"] == "succeeded" and done.cost_usd > 0
    assert cloud.cancelled == []


@pytest.mark.slow
def test_no_inbound_a_stop_reaches_the_trainer_through_the_bucket(tmp_path, tokenized_dir):
    """In no-inbound mode the kill rule could not stop a run: the trainer never heard an
    answer. Now the service writes stop.json into its bucket folder, the trainer reads it at
    its next flush, evaluates and exits 3, and the run ends killed: its cost ends there."""
    import time

    from tests.helpers import wait_until

    bucket = tmp_path / "bucket"
    manifest = bucket / "cache" / "data" / "wikitext-2" / "DATASET_MANIFEST.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    cloud = LocalCloud(time.time, bucket)
    engine, sched, launcher = make(tmp_path, time.time, cloud, bucket=bucket)
    launcher.opts = SkyOptions(image=IMAGE, accelerators=("L4",), vocabs="")
    heard = []
    sched.on_points = lambda engine, run, points: heard.append((run.id, len(points)))
    cfg = tiny_raw(tokenized_dir.parent, max_tokens=4000 * 8 * 64)
    cfg["eval"]["every_tokens"] = 10**9  # no interval eval: the stop is what ends it
    run = create_run(engine, cfg=validate(cfg), launcher="skypilot")

    def training():
        sched.tick()
        return get_run(engine, run_id=run.id).tokens_seen > 0

    wait_until(training, 180, "the bucket-only trainer training", every=0.3)
    assert heard and heard[0][0] == run.id  # its points met the kill rule's hook
    request_stop(engine, run_id=run.id, kind="kill", reason="kill rule: trailed", evidence={})

    def settled():
        sched.tick()
        return get_run(engine, run_id=run.id).status not in ("queued", "launching", "running")

    wait_until(settled, 180, "the stopped run settled", every=0.3)
    done = get_run(engine, run_id=run.id)
    run_dir = bucket / "runs" / str(run.id)
    assert done.status == "killed" and done.exit_reason == "kill rule: trailed"
    assert json.loads((run_dir / "stop.json").read_text())["reason"] == "kill rule: trailed"
    assert json.loads((run_dir / "exit.json").read_text())["code"] == 3
    assert done.tokens_seen < 4000 * 8 * 64  # stopped well before its budget


def test_a_job_that_ended_while_the_service_was_down_is_never_free(tmp_path):
    """A job that ran 55 minutes and finished while the service was down was recorded as
    "CPU: free": SkyPilot reports the GPU only while the cluster exists. Now it is charged
    for its 55 minutes at the dearest GPU it could have had, and the price says so."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, launcher = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    start = clock()
    clock.advance(55 * MIN)  # the service was down the whole time the job ran
    finish(engine, run.id)
    cloud.set(101, status="SUCCEEDED", start_at=start, end_at=clock())  # no accelerators now
    again = Scheduler(
        engine, sched.settings, [launcher], sched.pricing, clock=clock, capacity={"skypilot": 8}
    )
    again.tick()
    done = get_run(engine, run_id=run.id)
    (a,) = attempts(engine, run.id)
    price = Pricing().hourly("A100", True)  # the dearer of L4 and A100
    assert done.status == "succeeded" and a["accelerator"] == "A100"
    assert a["seconds"] == pytest.approx(55 * MIN)
    assert done.cost_usd == pytest.approx(55 / 60 * price) and done.cost_usd > 0
    assert "ASSUMED A100" in a["price_source"]


def test_a_gpu_seen_while_running_is_kept_when_the_record_forgets_it(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, sched, _ = make(tmp_path, clock, cloud)
    run = submit(engine, tmp_path)
    sched.tick()
    start = clock()
    cloud.set(101, status="RUNNING", start_at=start, accelerators={"L4": 1})
    run_for(sched, clock, 5 * MIN, heartbeat=lambda: beat(engine, run.id, clock))
    finish(engine, run.id)
    cloud.set(101, status="SUCCEEDED", end_at=clock(), accelerators=None)
    sched.tick()
    (a,) = attempts(engine, run.id)
    assert a["accelerator"] == "L4" and "ASSUMED" not in (a["price_source"] or "")
