"""SkyPilot: real sky.Task objects from the template, a YAML round trip, validation, and the
launcher over a fake adapter (the only fake: it stands for the cloud)."""

import logging
import os
from pathlib import Path

import pytest
import yaml

from runner.launch.base import RUNNING, UNKNOWN, LaunchSpec

TOKEN = "s3cret-run-token-xyz"


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)  # `import sky` writes ~/.sky
    try:
        yield pytest.importorskip("sky", reason="SkyPilot not installed (pip install .[cloud])")
    finally:
        if old is not None:
            os.environ["HOME"] = old


def spec(tmp_path, run_id=7):
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"base": {"name": "emb25", "max_tokens": 5_000_000, "model": {"embedding_ratio": 0.25}}}
        )
    )
    return LaunchSpec(
        run_id=run_id,
        attempt=1,
        run_dir=tmp_path,
        config_path=cfg,
        env={
            "PAX_RUNNER_URL": "https://pax.example.org",
            "PAX_RUN_ID": str(run_id),
            "PAX_RUN_TOKEN": TOKEN,
        },
    )


def test_build_task_is_a_real_spot_task(sky, tmp_path):
    from runner.launch.skypilot import SkyOptions, build_task

    task = build_task(spec(tmp_path), {"name": "emb25"}, SkyOptions(accelerators=("L4", "A10G")))
    assert isinstance(task, sky.Task) and task.name == "pax-run-7"
    res = list(task.resources)
    assert {list(r.accelerators)[0] for r in res} == {"L4", "A10G"}
    for r in res:
        assert r.use_spot and r.job_recovery["strategy"] == "FAILOVER"
        assert r.job_recovery["max_restarts_on_errors"] == 2
        assert list(r.image_id.values()) == ["docker:ghcr.io/example/pax:latest"]
    assert task.envs["PAX_RUN_ID"] == "7" and task.envs["PAX_RUNNER_URL"].startswith("https")
    assert '"name":"emb25"' in task.envs["PAX_SPEC_JSON"]
    assert TOKEN not in str(task.envs) and TOKEN not in repr(task)  # a secret, not an env
    assert "PAX_RUN_TOKEN" in task.secrets
    storage = task.storage_mounts["/pax"]
    assert storage.name == "pax-checkpoints" and storage.mode == sky.StorageMode.MOUNT_CACHED
    assert "/pax/runs/${PAX_RUN_ID}" in task.run  # per-run path: recovery resumes the run


def test_yaml_round_trip(sky, tmp_path):
    from runner.launch.skypilot import build_task

    task = build_task(spec(tmp_path), {"name": "emb25"})
    again = sky.Task.from_yaml_config(task.to_yaml_config())
    assert {str(r) for r in again.resources} == {str(r) for r in task.resources}
    assert again.envs == task.envs and again.run == task.run


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"accelerators": ("L4", "TPU-X")}, "sky.accelerators"),
        ({"accelerators": ()}, "sky.accelerators"),
        ({"image": "ghcr.io/x/pax"}, "sky.image"),
        ({"use_spot": False}, "sky.use_spot"),
    ],
)
def test_validation_skypilot_does_not_do(sky, tmp_path, kw, field):
    from runner.launch.skypilot import SkyOptions, build_task

    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_task(spec(tmp_path), {}, SkyOptions(**kw))


class FakeAdapter:
    """Stands for the cloud: records calls, answers with scripted job states."""

    def __init__(self):
        self.launched, self.cancelled, self.states = [], [], {}

    def launch(self, task, name):
        self.launched.append((task, name))
        return 41 + len(self.launched)

    def status(self, job_id):
        return self.states.get(job_id)

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def launch_cluster(self, task, cluster, idle_minutes):
        self.launched.append((task, cluster, idle_minutes))
        return 3

    def cluster_job_status(self, cluster, job_id):
        return self.states.get((cluster, job_id))

    def down(self, cluster):
        self.cancelled.append(cluster)


def test_launcher_over_the_adapter(sky, tmp_path, caplog):
    from runner.launch.skypilot import SkyPilotLauncher

    fake = FakeAdapter()
    launcher = SkyPilotLauncher(adapter=fake)
    with caplog.at_level(logging.DEBUG):
        job = launcher.start(spec(tmp_path))
    assert job == "42" and fake.launched[0][1] == "pax-run-7"
    assert TOKEN not in caplog.text  # SkyPilot prints secrets in clear: we never log the task
    assert launcher.poll(job) == UNKNOWN
    for state, expected in (
        ("PENDING", RUNNING),
        ("RECOVERING", RUNNING),
        ("RUNNING", RUNNING),
        ("SUCCEEDED", 0),
        ("FAILED", 1),
        ("FAILED_SETUP", 2),
        ("CANCELLED", 75),
    ):
        fake.states[42] = state
        assert launcher.poll(job) == expected, state
    launcher.stop(job, 10)
    assert fake.cancelled == [42]


def test_template_is_yaml_only():
    root = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((root / "sky" / "train.yaml").read_text())
    assert doc["resources"]["use_spot"] is True and "job_recovery" in doc["resources"]
    assert doc["file_mounts"]["/pax"]["mode"] == "MOUNT_CACHED"
    assert sorted(p.suffix for p in (root / "sky").iterdir()) <= [".md", ".yaml"]


def test_launch_spot_forecasts_and_asks_first(sky, tmp_path):
    from runner.launch.sky_cli import launch_spot
    from tests.conftest import ROOT

    fake, asked = FakeAdapter(), []
    out = launch_spot(
        ROOT / "configs" / "embed_ratio.yaml",
        exp=None,
        runner_url="",
        admin_token=None,
        accelerators=("L4", "A100"),
        image="docker:pax:1",
        bucket="b",
        tokens_per_s=50_000,
        confirm=lambda m: asked.append(m) or False,
        log=lambda m: None,
        adapter=fake,
    )
    assert out["confirmed"] is False and fake.launched == []
    assert "3 spot runs, 15.0M tokens" in asked[0] and "forecast $" in asked[0]
    out = launch_spot(
        ROOT / "configs" / "embed_ratio.yaml",
        exp="emb25",
        runner_url="",
        admin_token=None,
        accelerators=("L4",),
        image="docker:pax:1",
        bucket="b",
        tokens_per_s=50_000,
        confirm=lambda m: True,
        log=lambda m: None,
        adapter=fake,
    )
    assert [r["name"] for r in out["launched"]] == ["emb25"] and len(fake.launched) == 1
    task = fake.launched[0][0]
    assert list(list(task.resources)[0].accelerators) == ["L4"]
    low, high = out["forecast_usd"]
    assert 0 < low <= high


def test_plain_cluster_autostops_and_is_torn_down(sky, tmp_path):
    from runner.launch.skypilot import SkyOptions, SkyPilotLauncher

    fake = FakeAdapter()
    launcher = SkyPilotLauncher(SkyOptions(managed=False, idle_minutes=7), adapter=fake)
    job = launcher.start(spec(tmp_path))
    assert job == "cluster:pax-run-7:3" and fake.launched[0][2] == 7
    fake.states[("pax-run-7", 3)] = "RUNNING"
    assert launcher.poll(job) == RUNNING
    fake.states[("pax-run-7", 3)] = "SUCCEEDED"
    assert launcher.poll(job) == 0
    launcher.stop(job, 5)
    assert fake.cancelled == ["pax-run-7"]
