"""SkyPilot's launch call runs off the scheduler's tick: a call that hangs never holds the tick
(other runs are judged, the service answers), its job id is taken when it returns, its error
waits or pauses as a launch error does, and a call that outlives its deadline is given up (the
run's launch retried) and the job it makes late is cancelled, never left running unpaid-for.
Real scheduler, real SkyPilot launcher and sky.Task objects, the fake adapter for the cloud."""

from __future__ import annotations

import threading

import sky.exceptions as sky_errors

from runner.ledger import events
from runner.ledger.runs import get_run
from tests.helpers import wait_until
from tests.runner.launch.fake_sky import (
    MIN,
    Clock,
    FakeCloud,
    make,
    sky_home,  # noqa: F401 (an autouse fixture)
    submit,
)


class Hanging(FakeCloud):
    """Launches wait until the test lets them go (then succeed, or raise `fail`)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.go = threading.Event()
        self.fail: BaseException | None = None

    def launch(self, task, name):
        self.go.wait(60)
        if self.fail is not None:
            raise self.fail
        return super().launch(task, name)


def tick_within(sched, seconds=20.0) -> None:
    """A tick that must come back (it used to wait on the launch call itself)."""
    t = threading.Thread(target=sched.tick, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the scheduler's tick waited on SkyPilot's launch call"


def test_a_hanging_launch_never_holds_the_tick_and_its_job_is_taken_when_it_returns(tmp_path):
    clock = Clock()
    cloud = Hanging(clock)
    engine, sched, _ = make(tmp_path, clock, cloud, launch_wait_s=0.05)
    run = submit(engine, tmp_path)
    tick_within(sched)
    r = get_run(engine, run_id=run.id)
    assert r.status == "launching" and r.backend_id.startswith("launching:")
    clock.advance(5 * MIN)  # far past the lease and the start-up grace: a launch, not a silence
    tick_within(sched)
    assert get_run(engine, run_id=run.id).status == "launching"
    cloud.go.set()
    wait_until(lambda: cloud.tasks, 30, "the launch call returning")
    tick_within(sched)
    r = get_run(engine, run_id=run.id)
    assert r.backend_id == "101" and r.status == "launching" and r.attempt == 1
    cloud.set(101, status="RUNNING", start_at=clock())
    tick_within(sched)
    assert get_run(engine, run_id=run.id).status == "running"


def test_a_launch_error_met_off_the_tick_waits_with_back_off(tmp_path):
    clock = Clock()
    cloud = Hanging(clock)
    cloud.fail = sky_errors.ResourcesUnavailableError("Failed to acquire L4 in all zones")
    engine, sched, _ = make(tmp_path, clock, cloud, launch_wait_s=0.05, launch_retry_s=600)
    run = submit(engine, tmp_path)
    tick_within(sched)
    cloud.go.set()
    launcher = sched.launchers["skypilot"]
    wait_until(lambda: all(c.done() for c, _ in launcher.out.values()), 30, "the call failing")
    tick_within(sched)
    r = get_run(engine, run_id=run.id)
    assert r.status == "queued" and r.not_before is not None and r.backend_id is None
    (ev,) = [e for e in events.events(engine, run_id=run.id) if e["to_status"] == "queued"][-1:]
    assert "ResourcesUnavailableError" in ev["reason"] and "retried in 600 s" in ev["reason"]


def test_a_call_past_its_deadline_is_retried_and_its_late_job_cancelled(tmp_path):
    clock = Clock()
    cloud = Hanging(clock)
    engine, sched, launcher = make(tmp_path, clock, cloud, launch_wait_s=0.05)
    run = submit(engine, tmp_path)
    tick_within(sched)
    clock.advance(11 * MIN)  # past the launcher's 600 s deadline
    tick_within(sched)
    r = get_run(engine, run_id=run.id)
    assert r.status == "queued" and r.backend_id is None  # not an attempt: a launch retried
    said = [e["reason"] for e in events.events(engine, run_id=run.id)]
    assert any("did not return within 600 s" in x for x in said), said
    cloud.go.set()  # the given-up call returns after all: its job must not run unwatched
    wait_until(lambda: 101 in cloud.cancelled, 30, "the late job cancelled")
