"""Several runs per GPU: the local launcher's slots (PAX_GPUS x PAX_GPU_SLOTS) and the cost of a
shared GPU split between the runs on it by their time there."""

import pytest
from sqlmodel import Session, SQLModel, create_engine, select

from runner.cost import Pricing
from runner.ledger.attempts import shared_seconds
from runner.ledger.models import Attempt
from tests.helpers import tiny_raw
from tests.runner.conftest import post_run


def test_shared_seconds_split_each_moment_between_the_runs_on_the_device(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        rows = {
            "a": Attempt(run_id=1, attempt=1, device="h:gpu0", started_at=0.0, ended_at=10.0),
            "b": Attempt(run_id=2, attempt=1, device="h:gpu0", started_at=5.0, ended_at=15.0),
            "c": Attempt(run_id=3, attempt=1, device="h:gpu0", started_at=20.0),  # still open
            "d": Attempt(run_id=4, attempt=1, device="h:gpu1", started_at=0.0, ended_at=30.0),
            "e": Attempt(run_id=5, attempt=1, device="h:gpu0", started_at=8.0, ended_at=9.0),
        }
        s.add_all(rows.values())
        s.commit()
        # a: 0-5 alone, 5-8 with b, 8-9 with b and e, 9-10 with b
        assert shared_seconds(s, rows["a"], 10.0) == pytest.approx(5 + 3 / 2 + 1 / 3 + 1 / 2)
        assert shared_seconds(s, rows["b"], 15.0) == pytest.approx(3 / 2 + 1 / 3 + 1 / 2 + 5)
        assert shared_seconds(s, rows["e"], 9.0) == pytest.approx(1 / 3)
        assert shared_seconds(s, rows["c"], 25.0) == pytest.approx(5.0)  # alone; gpu1 apart
        assert shared_seconds(s, rows["d"], 30.0) == pytest.approx(30.0)
        # the device's busy time 0-15 is charged exactly once
        total = sum(shared_seconds(s, rows[k], rows[k].ended_at) for k in "abe")
        assert total == pytest.approx(15.0)


@pytest.mark.slow
def test_local_slots_pack_runs_onto_one_gpu_and_split_its_cost(service_factory, tokenized_dir):
    """PAX_GPUS=1, PAX_GPU_SLOTS=2 on this CPU machine: two trainers at once (never three), both
    placed on GPU 0, each charged its time-weighted share of the T4."""
    svc = service_factory(concurrency=1, PAX_ACCELERATOR="T4", PAX_GPUS="1", PAX_GPU_SLOTS="2")
    # Unequal lengths, so that the third run starts while the long one still trains: with
    # equal runs the first two could end together and leave the third alone on the GPU (all of
    # it charged to it, as it should be), which made the shares below a race.
    runs = [
        post_run(svc, tiny_raw(tokenized_dir.parent, max_tokens=n * 8 * 64), name=f"slot{i}")
        for i, n in enumerate((40, 160, 60))
    ]
    for r in runs:
        assert svc.wait_status(r["id"], ("succeeded", "failed"), timeout=240)["status"] == (
            "succeeded"
        )
    rows = [svc.get(f"/runs/{r['id']}/attempts").json()[0] for r in runs]
    edges = sorted([(x["started_at"], 1) for x in rows] + [(x["ended_at"], -1) for x in rows])
    running, most = 0, 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most == 2  # packed two at a time, never past the slots
    device = rows[0]["device"]
    assert device.endswith(":gpu0") and {x["device"] for x in rows} == {device}
    for x in rows:
        assert 0.5 <= x["gpus"] < 1.0  # shared part of the time, alone the rest
        assert x["cost_usd"] == pytest.approx(x["gpu_hours"] * Pricing().hourly("T4", False))
    # all three: the GPU's busy time (the union of the attempts) is charged once
    spans = sorted((x["started_at"], x["ended_at"]) for x in rows)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    assert sum(x["gpu_hours"] for x in rows) * 3600 == pytest.approx(busy, rel=1e-6)


def test_two_runs_ending_at_once_on_postgresql_are_charged_their_own_time(postgres):
    """Two runs on one GPU ending within a millisecond: on PostgreSQL (read committed) each
    read the other as still running, so the later paid half of a stretch it had alone (seen
    as a 0.4 ms miss in test_workers' slots test). The later end now waits for the earlier's
    commit. Here A ends at 10 and stays uncommitted while B ends at 10.5: B had 5-10 shared
    and 10-10.5 alone, 3.0 GPU-seconds, not 2.75."""
    import threading

    from runner.ledger import attempts
    from runner.ledger.db import make_engine
    from runner.ledger.models import Run
    from tests.runner.conftest import new_postgres_ledger

    engine = make_engine(new_postgres_ledger(postgres))
    with Session(engine) as s:
        for rid, start in ((1, 0.0), (2, 5.0)):
            s.add(Run(id=rid, name=f"r{rid}", spec_hash="x", spec_json="{}", attempt=1,
                      status="running", created_at=0.0, updated_at=0.0))  # fmt: skip
            s.flush()
            s.add(Attempt(run_id=rid, attempt=1, device="h:gpu0", started_at=start,
                          accelerator="T4"))  # fmt: skip
        s.commit()
    a_ended, b_done = threading.Event(), threading.Event()

    def end(rid, t, hold=False):
        with Session(engine) as s:
            attempts.end(s, s.get(Run, rid), t=t, outcome="succeeded", prices=None)
            s.flush()
            if hold:
                a_ended.set()
                b_done.wait(timeout=3)  # B either finished (the old race) or waits on us
            s.commit()
        if not hold:
            b_done.set()

    a = threading.Thread(target=end, args=(1, 10.0, True))
    a.start()
    assert a_ended.wait(timeout=30)
    b = threading.Thread(target=end, args=(2, 10.5))
    b.start()
    a.join(timeout=60)
    b.join(timeout=60)
    with Session(engine) as s:
        rows = {r.run_id: r for r in s.exec(select(Attempt)).all()}
    assert rows[1].seconds * rows[1].gpus == pytest.approx(5 + 5 / 2)
    assert rows[2].seconds * rows[2].gpus == pytest.approx(5 / 2 + 0.5)
    engine.dispose()
