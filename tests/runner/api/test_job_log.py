"""A cloud run's log (issue 27): its train.log stays on the VM, so the run page's log link was
empty. The link now fetches the job's own log from SkyPilot on demand, and says how to get it
by hand when SkyPilot cannot answer. The fake adapter stands for the cloud."""

from runner.ledger.db import make_engine
from runner.ledger.runs import set_run_fields
from tests.runner.conftest import in_process, post_run
from tests.runner.launch.fake_sky import IMAGE, sky_home  # noqa: F401 (an autouse fixture)


def test_a_cloud_runs_log_is_fetched_from_skypilot(tmp_path, spec):
    with in_process(
        tmp_path,
        sky=True,
        sky_image=IMAGE,
        sky_accelerators=["L4"],
        sky_bucket_path=str(tmp_path / "bucket"),
        sky_concurrency=0,  # nothing launches: the test places the job itself
        sky_adapter="tests.runner.launch.fake_sky:CloudsEnabled",
    ) as svc:
        run = post_run(svc, spec, launcher="skypilot")
        sky = svc.app.state.sky_launcher
        job = sky.adapter.launch(None, "pax-run-1")  # the job SkyPilot would have made
        engine = make_engine(svc.db)
        set_run_fields(engine, run_id=run["id"], launcher="skypilot", backend_id=str(job))
        log = svc.get(f"/runs/{run['id']}/log?tail=3")
        assert log.status_code == 200
        assert log.text.splitlines() == [f"job {job} line {i}" for i in (997, 998, 999)]
        assert "fetched on demand" in svc.page(f"/runs/{run['id']}").text

        set_run_fields(engine, run_id=run["id"], backend_id="999")  # SkyPilot forgot it
        gone = svc.get(f"/runs/{run['id']}/log")
        assert gone.status_code == 200 and "not found" in gone.text
        assert "sky jobs logs 999 --no-follow" in gone.text
