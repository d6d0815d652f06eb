"""A sweep a launch error paused (issue 27): the API and the dashboard show why, and
POST /sweeps/{id}/resume (`pax sweep resume`) lets its runs launch again; admin only, 409 when
the sweep is not paused, 404 when there is none."""

from typer.testing import CliRunner

from pax.cli import app
from runner.ledger.db import make_engine
from runner.ledger.sweeps import pause_sweep
from tests.helpers import small_plan, submit
from tests.runner.conftest import ADMIN

WHY = "SkyPilot has no access to a cloud (NoCloudAccessError: no cloud): run `sky check`"


def test_a_paused_sweep_shows_why_and_resumes(service, tokenized_dir):
    sw = submit(service, small_plan(tokenized_dir.parent)).json()
    assert sw["status"] == "active" and sw["paused_reason"] is None
    assert service.post(f"/sweeps/{sw['id']}/resume").status_code == 409  # not paused
    assert pause_sweep(make_engine(service.db), sweep_id=sw["id"], reason=WHY)

    got = service.get(f"/sweeps/{sw['id']}").json()
    assert got["status"] == "paused" and got["paused_reason"] == WHY
    page = service.page(f"/sweeps/{sw['id']}").text
    assert 'id="paused-reason"' in page and "sky check" in page
    assert f"pax sweep resume {sw['id']}" in page and f"/sweeps/{sw['id']}/resume" in page

    assert service.post(f"/sweeps/{sw['id']}/resume", token=None).status_code in (401, 403)
    r = service.post(f"/sweeps/{sw['id']}/resume")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["paused_reason"] is None
    evs = service.get(f"/runs?sweep_id={sw['id']}").json()  # its runs are still queued
    assert {row["status"] for row in evs["items"]} == {"queued"}
    assert "paused-reason" not in service.page(f"/sweeps/{sw['id']}").text
    assert service.post("/sweeps/999999/resume").status_code == 404


def test_pax_sweep_resume(service_factory, tokenized_dir):
    svc = service_factory()
    sw = submit(svc, small_plan(tokenized_dir.parent)).json()
    cli = CliRunner()
    url = ["--url", svc.root]
    refused = cli.invoke(app, ["sweep", "resume", str(sw["id"]), *url, "--token", ADMIN])
    assert refused.exit_code != 0 and "only a paused sweep resumes" in refused.output
    assert pause_sweep(make_engine(svc.db), sweep_id=sw["id"], reason=WHY)
    ok = cli.invoke(app, ["sweep", "resume", str(sw["id"]), *url, "--token", ADMIN])
    assert ok.exit_code == 0, ok.output
    assert '"status": "active"' in ok.output and "resumed" in ok.output
