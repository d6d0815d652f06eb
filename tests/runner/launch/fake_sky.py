"""SkyPilot as the scheduler meets it, for tests: a fake adapter that stands for the cloud
(launches record the real sky.Task, the job queue answers scripted records), a clock the test
moves, and the real scheduler and SkyPilot launcher over a real SQLite ledger."""

import os

import pytest

from runner.cost import Pricing
from runner.launch.scheduler import Scheduler
from runner.launch.skypilot import SkyOptions, SkyPilotLauncher
from runner.ledger.attempts import attempt_rows
from runner.ledger.db import make_engine, upgrade
from runner.ledger.results import store_result
from runner.ledger.runs import create_run, set_run_fields
from runner.settings import Settings
from tests.helpers import tiny_raw
from trainer.config import validate

IMAGE = "docker:ghcr.io/pax/pax@sha256:" + "a" * 64
MIN = 60.0


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeCloud:
    """Stands for SkyPilot's API: launches record the task, queue answers scripted records."""

    def __init__(self, clock: Clock, fail_launch: str | None = None):
        self.clock = clock
        self.fail_launch = fail_launch
        self.tasks, self.cancelled, self.queue_calls = [], [], 0
        self.jobs: dict[int, dict] = {}
        self.raises: list[BaseException] = []  # what the next launches raise, in order
        self.on_queue = None  # called as the cloud is asked: what happens meanwhile

    def launch(self, task, name):
        if self.raises:
            raise self.raises.pop(0)
        if self.fail_launch and name.endswith(self.fail_launch):
            raise RuntimeError("No cloud access: AWS credentials not found; run `sky check`")
        self.tasks.append(task)
        job = 100 + len(self.tasks)
        self.jobs[job] = {"job_id": job, "status": "PENDING", "recovery_count": 0}
        return job

    def set(self, job: int, **fields) -> None:
        self.jobs[job].update(fields)

    def queue(self, job_ids):
        self.queue_calls += 1
        if self.on_queue is not None:
            self.on_queue()
        return [{**self.jobs[j], "now": self.clock()} for j in job_ids if j in self.jobs]

    def job_log(self, job_id, tail):
        if job_id not in self.jobs:
            raise RuntimeError(f"managed job {job_id} not found")
        lines = [f"job {job_id} line {i}" for i in range(1000)]
        return "\n".join(lines[-tail:]) + "\n"

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        self.jobs[job_id]["status"] = "CANCELLED"


@pytest.fixture(scope="module", autouse=True)
def sky_home(tmp_path_factory):
    pytest.importorskip("sky", reason="SkyPilot not installed (pip install .[cloud])")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("home"))  # `import sky` writes ~/.sky
    yield
    if old is not None:
        os.environ["HOME"] = old


def make(tmp_path, clock, cloud, bucket=None, poll_s=0.0, launch_wait_s=2.0, **settings):
    db = tmp_path / "pax.db"
    upgrade(db)
    engine = make_engine(db)
    s = Settings(
        db=db,
        runs_root=tmp_path / "runs",
        concurrency=0,
        lease_s=60,
        startup_grace_s=180,
        max_attempts=3,
        sky_bucket_path=str(bucket) if bucket else None,
        **settings,
    )
    pricing = Pricing()
    launcher = SkyPilotLauncher(
        SkyOptions(image=IMAGE, accelerators=("L4", "A100"), runner_url="https://pax.example.org"),
        adapter=cloud,
        pricing=pricing,
        bucket_path=str(bucket) if bucket else None,
        poll_s=poll_s,
        launch_wait_s=launch_wait_s,
        call_timeout_s=600.0,
        clock=clock,
    )
    sched = Scheduler(engine, s, [launcher], pricing, clock=clock, capacity={"skypilot": 8})
    return engine, sched, launcher


def submit(engine, tmp_path, name="emb25"):
    cfg = validate(tiny_raw(tmp_path, name=name))
    return create_run(engine, cfg=cfg, launcher="skypilot")


def beat(engine, run_id, clock, tokens=1024):
    """The trainer's heartbeat, at the test's clock."""
    set_run_fields(engine, run_id=run_id, last_heartbeat=clock(), tokens_seen=tokens)


def run_for(sched, clock, seconds, step=30.0, heartbeat=None):
    """Tick every `step` seconds of the test's clock; `heartbeat()` each tick when given."""
    t_end = clock() + seconds
    while clock() < t_end:
        clock.advance(step)
        if heartbeat:
            heartbeat()
        sched.tick()


def attempts(engine, run_id):

    return attempt_rows(engine, run_id=run_id)


def finish(engine, run_id, status="succeeded"):
    store_result(
        engine,
        run_id=run_id,
        metrics={"run": {"status": status, "exit_code": 0}, "training": {"tokens_seen": 4096}},
    )


class CloudsEnabled(FakeCloud):
    """A cloud `sky check` enabled (PAX_SKY_ADAPTER=tests.runner.launch.fake_sky:CloudsEnabled)."""

    def __init__(self):
        super().__init__(Clock())

    def enabled_clouds(self):
        return ["aws", "gcp"]


class NoClouds(CloudsEnabled):
    """SkyPilot installed, but no credential `sky check` accepts."""

    def enabled_clouds(self):
        return []
