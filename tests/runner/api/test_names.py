"""Names and paths: nothing from a request or the ledger reaches outside its folder."""

import pytest

from tests.helpers import tiny_raw
from tests.runner.conftest import post_run


@pytest.mark.parametrize("name", ["x/../../../../escape-dir", "a\x00b", "..", "a b", "\x1b[31m"])
def test_run_names_that_would_reach_the_filesystem_are_refused(service, tokenized_dir, name):
    r = service.post("/runs", json={"config": tiny_raw(tokenized_dir.parent), "name": name})
    assert r.status_code == 422 and "name" in r.json()["detail"], r.text
    r = service.post("/runs", json={**tiny_raw(tokenized_dir.parent), "name": name})
    assert r.status_code == 422 and "name" in r.json()["detail"], r.text


def test_sweep_keys_and_worker_names_are_refused_likewise(service, tokenized_dir):
    doc = {"base": tiny_raw(tokenized_dir.parent), "experiments": {"../../x": {}}}
    r = service.post("/sweeps", json=doc)
    assert r.status_code == 422 and "experiments" in r.json()["detail"]
    r = service.post("/claim", json={"worker": "../x"})
    assert r.status_code == 422 and "worker" in r.json()["detail"]


def test_paths_from_the_ledger_stay_under_their_root(tmp_path):
    from runner.launch.base import run_dir_under

    assert run_dir_under(tmp_path, 7, "emb25") == (tmp_path / "000007-emb25").resolve()
    with pytest.raises(ValueError, match="would leave"):
        run_dir_under(tmp_path, 7, "x/../../../escape")


@pytest.mark.slow
def test_a_symlinked_run_folder_fails_the_run_at_launch_with_why(service_factory, spec, tmp_path):
    """It stayed `launching` until its lease expired (the scheduler's tick failed on it)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "runs").mkdir(exist_ok=True)
    (tmp_path / "runs" / "000001-tiny").symlink_to(elsewhere)
    svc = service_factory(concurrency=1)
    run = post_run(svc, spec)
    assert run["id"] == 1
    done = svc.wait_status(run["id"], ("failed",), timeout=60)
    assert "symbolic link" in done["exit_reason"] and list(elsewhere.iterdir()) == []
