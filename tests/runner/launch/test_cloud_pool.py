"""Warm GPU workers on SkyPilot (`pax cloud up`): the real pool and real sky.Task objects over the
fake adapter that stands for the cloud, on a real SQLite ledger, with a clock the test moves.
Launches run off the caller's thread, launch errors wait or end the worker with the fix, VM time
is kept as SkyPilot's records show it, and the bill is runs + idle + the jobs controller."""

from __future__ import annotations

import threading

import pytest
import sky.exceptions as sky_errors

from runner.cost import Pricing
from runner.launch.sky_workers import CloudPool, worker_task_config
from runner.launch.skypilot import SkyOptions
from runner.ledger import cloud_workers as cw
from runner.ledger.attempts import Placement
from runner.ledger.db import make_engine, upgrade
from runner.ledger.lifecycle import claim_queued, set_status
from runner.ledger.runs import create_run
from runner.settings import Settings
from tests.helpers import tiny_raw, wait_until
from tests.runner.launch.fake_sky import (
    IMAGE,
    MIN,
    Clock,
    FakeCloud,
    sky_home,  # noqa: F401 (an autouse fixture)
)
from trainer.config import validate

URL = "https://pax.example.org"
TOKEN = "w" * 43


def make_pool(tmp_path, clock, cloud, runner_url=URL):
    db = tmp_path / "pax.db"
    upgrade(db)
    engine = make_engine(db)
    settings = Settings(db=db, runs_root=tmp_path / "runs", launch_retry_s=60, sky_poll_s=10)
    opts = SkyOptions(image=IMAGE, accelerators=("H100",), runner_url=runner_url, bucket="pax-t")
    pool = CloudPool(engine, settings, opts, cloud, Pricing(), TOKEN, clock=clock)
    return engine, pool


def settle(pool, clock, seconds=0.0):
    """Move the clock, then step until the pool's launch calls have come back (those of the
    second step too: a step that refills a place launches it at the next)."""
    clock.advance(seconds)
    for _ in range(2):
        pool.step()
        wait_until(lambda: all(f.done() for f, _ in pool.launching.values()), 30, "launch calls")


def rows(engine):
    return {w.name: w for w in cw.workers(engine)}


def test_worker_task_runs_pax_worker_with_the_worker_token_as_a_secret():
    opts = SkyOptions(image=IMAGE, accelerators=("H100",), runner_url=URL, bucket="pax-abc")
    doc = worker_task_config(
        opts, name="pax-w3", accelerator="H100", slots=4, idle_exit_s=600, worker_token=TOKEN
    )
    assert doc["resources"]["accelerators"] == "H100:1" and doc["resources"]["use_spot"]
    assert doc["envs"]["PAX_WORKER_SLOTS"] == "4" and doc["envs"]["PAX_WORKER_NAME"] == "pax-w3"
    assert doc["envs"]["PAX_CHECKPOINT_URL"] == "/pax/checkpoints"
    assert doc["file_mounts"]["/pax"]["name"] == "pax-abc"
    assert doc["run"].rstrip().endswith("exec pax worker")
    assert doc["secrets"] == {"PAX_WORKER_TOKEN": TOKEN}
    assert TOKEN not in str(doc["envs"])
    with pytest.raises(ValueError, match="PAX_SKY_RUNNER_URL"):
        worker_task_config(
            SkyOptions(image=IMAGE, accelerators=("H100",)),
            name="pax-w1",
            accelerator="H100",
            slots=1,
            idle_exit_s=0,
            worker_token=TOKEN,
        )


def test_up_launches_off_the_step_and_charges_vm_time_from_the_records(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, pool = make_pool(tmp_path, clock, cloud)
    asked = pool.up(accelerator="H100", workers=2, slots=4, idle_exit_s=600)
    assert [w.name for w in asked] == ["pax-w1", "pax-w2"]
    settle(pool, clock)
    assert len(cloud.tasks) == 2  # real sky.Task objects
    task = cloud.tasks[0]
    assert task.envs["PAX_WORKER_NAME"] == "pax-w1" and "PAX_WORKER_TOKEN" not in task.envs
    w = rows(engine)
    assert w["pax-w1"].status == "pending" and w["pax-w1"].backend_id == "101"
    t0 = clock()
    for job in (101, 102):
        cloud.set(job, status="RUNNING", start_at=t0, accelerators={"H100": 1})
    # provisioning began 4 min before RUNNING (SkyPilot's submitted_at), seen only for w1
    cloud.set(101, submitted_at=t0 - 4 * MIN)
    settle(pool, clock, 30 * MIN)
    assert rows(engine)["pax-w1"].status == "running"
    cloud.set(101, status="SUCCEEDED", end_at=clock())  # idle for 10 min: it left
    settle(pool, clock, 10 * MIN)
    w1 = rows(engine)["pax-w1"]
    assert w1.status == "ended" and "nothing for it" in w1.reason
    price = Pricing().hourly("H100", True)
    assert w1.vm_seconds == pytest.approx(34 * MIN)  # from provisioning to the end
    assert w1.cost_usd == pytest.approx(34 * MIN / 3600 * price)
    # a restart of the service (a new pool on the same ledger) keeps what was seen
    _, again = make_pool(tmp_path, clock, cloud)
    again.engine = engine
    settle(again, clock, MIN)
    w2 = rows(engine)["pax-w2"]
    assert w2.status == "running" and w2.vm_seconds == pytest.approx(41 * MIN)
    assert rows(engine)["pax-w1"].vm_seconds == pytest.approx(34 * MIN)


def test_a_launch_call_that_hangs_never_blocks_a_step(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    release = threading.Event()
    launch = cloud.launch
    cloud.launch = lambda task, name: (release.wait(60), launch(task, name))[1]
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=1, slots=2, idle_exit_s=0)
    pool.step()  # returns with the call still out
    clock.advance(3 * MIN)
    pool.step()
    w = rows(engine)["pax-w1"]
    assert w.status == "launching" and "has not returned" in w.reason
    release.set()
    settle(pool, clock)
    assert rows(engine)["pax-w1"].backend_id == "101" and len(cloud.tasks) == 1


def test_no_capacity_waits_with_back_off_then_launches(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    cloud.raises = [sky_errors.ResourcesUnavailableError("Failed to acquire H100 in all zones")]
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=1, slots=2, idle_exit_s=600)
    settle(pool, clock)
    w = rows(engine)["pax-w1"]
    assert w.status == "launching" and w.backend_id is None
    assert "ResourcesUnavailableError" in w.reason and "retried in 60 s" in w.reason
    settle(pool, clock, 30)  # not yet: the back-off holds
    assert cloud.tasks == []
    settle(pool, clock, 31)
    assert rows(engine)["pax-w1"].backend_id == "101"


def test_a_worker_job_that_found_no_capacity_is_asked_again_not_lost(tmp_path):
    """SkyPilot's managed job can itself give up for capacity (FAILED_NO_RESOURCE, after its
    own retries): the worker was then marked failed for good, and the study waited for a user.
    Now a new worker asks again after the back-off; each row keeps its own VM time."""
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=1, slots=2, idle_exit_s=600)
    settle(pool, clock)
    cloud.set(101, status="FAILED_NO_RESOURCE", failure_reason="no H100 spot in us-east-1")
    settle(pool, clock, 10)
    w = rows(engine)
    assert w["pax-w1"].status == "failed" and "no capacity for H100 spot" in w["pax-w1"].reason
    assert "replaced by pax-w2" in w["pax-w1"].reason and w["pax-w1"].vm_seconds == 0
    assert w["pax-w2"].status == "launching" and "retried in 60 s" in w["pax-w2"].reason
    assert (w["pax-w2"].slots, w["pax-w2"].idle_exit_s) == (2, 600)
    settle(pool, clock, 30)
    assert len(cloud.tasks) == 1  # the back-off holds
    settle(pool, clock, 31)
    assert rows(engine)["pax-w2"].backend_id == "102"
    settle(pool, clock, 10)
    assert len(cw.workers(engine, live_only=True)) == 1  # replaced once, not once per poll


def test_runs_queued_after_the_workers_left_idle_get_a_worker_again(tmp_path, tokenized_dir):
    """A sweep on warm workers never finished (seen in tests/runner/launch/test_cloud_e2e.py): a
    preempted worker's runs were requeued after their lease, when both workers had already left
    idle, and nothing launched one again. Now the pool refills its places while runs for workers
    wait untaken: one worker per `slots` waiting runs, up to the size `up` asked for, once."""
    import time

    clock = Clock(time.time())  # the runs are queued on the real clock
    cloud = FakeCloud(clock)
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=2, slots=2, idle_exit_s=600)
    settle(pool, clock)
    for job in (101, 102):  # both leave idle
        cloud.set(job, status="SUCCEEDED", start_at=clock(), end_at=clock() + 60)
    settle(pool, clock, 60)
    assert [w.status for w in cw.workers(engine)] == ["ended", "ended"]
    clock.t = time.time()  # the runs are queued now
    cfg = validate(tiny_raw(tokenized_dir.parent))
    runs = [create_run(engine, cfg=cfg, launcher="worker") for _ in range(3)]
    create_run(engine, cfg=cfg, launcher="local")  # not a worker's: never counted
    settle(pool, clock, 10)  # a live worker would have taken them by now; none is up
    assert len(cloud.tasks) == 2  # not yet: they have waited 10 s of PAX_CLOUD_REFILL_S=30
    settle(pool, clock, 25)
    w = rows(engine)
    assert len(cloud.tasks) == 4  # 3 runs for 2-slot workers: both places refilled
    assert (w["pax-w1"].replaced_by, w["pax-w2"].replaced_by) == ("pax-w3", "pax-w4")
    assert "replaces pax-w1, which left idle: 3 runs for workers waited" in w["pax-w3"].reason
    assert (w["pax-w3"].slots, w["pax-w3"].idle_exit_s, w["pax-w3"].accelerator) == (
        2, 600, "H100",
    )  # fmt: skip
    settle(pool, clock, 60)
    assert len(cloud.tasks) == 4  # each place once, however long the runs still wait
    # the new workers leave idle too; one run is left, waiting: one place is refilled
    for r in runs[1:]:
        set_status(engine, run_id=r.id, to="cancelled", reason="test", pricing=Pricing())
    for job in (103, 104):
        cloud.set(job, status="SUCCEEDED", start_at=clock(), end_at=clock() + 1)
    settle(pool, clock, 1)  # seen ended, the place refilled
    settle(pool, clock, 1)  # launched
    assert len(cloud.tasks) == 5 and rows(engine)["pax-w5"].status in cw.LIVE
    # its task runs before its worker claims: up, not yet claiming, it is still starting (the
    # e2e saw each step refill another place while the run waited those seconds)
    cloud.set(105, status="RUNNING", start_at=clock())
    settle(pool, clock, 60)
    assert len(cloud.tasks) == 5 and rows(engine)["pax-w5"].status == "running"
    # `pax cloud down` closes the pool: nothing is refilled after it
    pool.down()
    cloud.set(105, status="CANCELLED", end_at=clock())
    settle(pool, clock, 10)
    settle(pool, clock, 120)
    assert len(cloud.tasks) == 5 and not cw.workers(engine, live_only=True)


def test_a_bad_credential_ends_the_worker_with_the_fix(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    cloud.raises = [sky_errors.NoCloudAccessError("No cloud is enabled")]
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=1, slots=2, idle_exit_s=600)
    settle(pool, clock)
    w = rows(engine)["pax-w1"]
    assert w.status == "failed" and "sky check" in w.reason
    settle(pool, clock, 3600)
    assert cloud.tasks == []  # never tried again by itself


def test_up_refuses_what_could_never_run(tmp_path):
    clock = Clock()
    engine, pool = make_pool(tmp_path, clock, FakeCloud(clock))
    with pytest.raises(ValueError, match="accelerators"):
        pool.up(accelerator="B300", workers=1, slots=1, idle_exit_s=0)
    # idle workers that leave before a preempted worker's runs are requeued strand those runs
    with pytest.raises(ValueError, match="twice PAX_LEASE_S"):
        pool.up(accelerator="H100", workers=1, slots=1, idle_exit_s=90)
    _, inbound_less = make_pool(tmp_path / "b", clock, FakeCloud(clock), runner_url=None)
    with pytest.raises(ValueError, match="PAX_SKY_RUNNER_URL"):
        inbound_less.up(accelerator="H100", workers=1, slots=1, idle_exit_s=0)
    assert cw.workers(engine) == []


def test_down_cancels_each_live_worker_once(tmp_path):
    clock = Clock()
    cloud = FakeCloud(clock)
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=2, slots=2, idle_exit_s=0)
    settle(pool, clock)
    cloud.set(101, status="RUNNING", start_at=clock())
    assert pool.down() == 2
    settle(pool, clock, 10)
    settle(pool, clock, 10)
    assert sorted(cloud.cancelled) == [101, 102]
    cloud.jobs[101]["end_at"] = clock()
    settle(pool, clock, 10)
    w = rows(engine)
    assert w["pax-w1"].status == "cancelled" and w["pax-w1"].reason == "pax cloud down"


def test_the_bill_is_runs_plus_idle_plus_the_controller(tmp_path, tokenized_dir):
    """A worker's VM time at the catalog price = what the runs in its slots were charged +
    its idle time; the jobs controller's VM is its own line."""
    import time

    clock = Clock(time.time())  # the ledger charges attempts on the real clock
    cloud = FakeCloud(clock)
    engine, pool = make_pool(tmp_path, clock, cloud)
    pool.up(accelerator="H100", workers=1, slots=2, idle_exit_s=600)
    settle(pool, clock)
    cloud.set(101, status="RUNNING", start_at=clock() - 5, accelerators={"H100": 1})
    run = create_run(engine, cfg=validate(tiny_raw(tokenized_dir.parent)), launcher="worker")
    pricing = Pricing()
    place = Placement(accelerator="H100", spot=True, gpus=0.5, device="pax-w1:gpu0")
    claim_queued(
        engine, limit=1, launcher="worker:pax-w1-s0", kinds=("worker",), placement=place,
        pricing=pricing, running="test",
    )  # fmt: skip
    wait_until(lambda: time.time() > clock() + 0.2, 5, "the run training a moment")
    set_status(engine, run_id=run.id, to="succeeded", reason="test", pricing=pricing)
    clock.advance(10 * MIN)
    cloud.set(101, status="SUCCEEDED", end_at=clock())
    settle(pool, clock)
    b = cw.bill(engine, controller=pricing.controller(), t=clock())
    (w,) = b["workers"]
    assert w["runs_usd"] > 0 and w["idle_usd"] > 0
    assert w["runs_usd"] + w["idle_usd"] == pytest.approx(w["vm_usd"])
    usd_h, autostop, source = pricing.controller()
    assert usd_h > 0 and "m6i" in source
    # the controller: from the launch ask to the worker's end, plus its autostop
    ctl = b["controller"]
    assert ctl["seconds"] == pytest.approx(clock() - rows(engine)["pax-w1"].created_at, abs=2)
    settle(pool, clock, autostop + 3600)
    later = cw.bill(engine, controller=pricing.controller(), t=clock())
    assert later["controller"]["seconds"] == pytest.approx(ctl["seconds"] + autostop, abs=2)
    assert later["total_usd"] == pytest.approx(later["vm_usd"] + later["controller"]["usd"])


def test_controller_time_is_the_union_of_the_workers_stretches():
    # [0, 200+600] and [2000, now=2500]
    spans = [(0, 100), (50, 200), (2000, None)]
    assert cw.controller_seconds(spans, 2500, 600) == pytest.approx(800 + 500)
    assert cw.controller_seconds([], 2500, 600) == 0.0
