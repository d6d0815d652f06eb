"""SkyPilot: real sky.Task objects from the shipped template, a YAML round trip, what we check
that SkyPilot does not, SkyPilot's job states as the scheduler reads them, the launcher over a
fake adapter (the only fake: it stands for the cloud), the service's start-up refusals and
`pax sky launch` through the service."""

import logging
import os
import re

import pytest
import yaml

from runner.cost import Pricing
from runner.launch.base import EXITED, NOT_OURS, PENDING, RECOVERING, RUNNING, LaunchSpec
from tests.helpers import tiny_raw

TOKEN = "s3cret-run-token-xyz"
IMAGE = "docker:ghcr.io/pax/pax@sha256:" + "b" * 64


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


def opts(**kw):
    from runner.launch.skypilot import SkyOptions

    return SkyOptions(**{"image": IMAGE, "accelerators": ("L4", "A10G"), **kw})


def spec(tmp_path, run_id=7):
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(yaml.safe_dump({"base": {"name": "emb25", "max_tokens": 5_000_000}}))
    return LaunchSpec(
        run_id=run_id,
        attempt=1,
        run_dir=tmp_path,
        config_path=cfg,
        env={"PAX_RUN_ID": str(run_id), "PAX_RUN_TOKEN": TOKEN, "PAX_HEARTBEAT_S": "15"},
    )


def test_build_task_is_a_real_spot_task_pinned_by_digest(sky, tmp_path):
    from runner.launch.skypilot import build_task

    task = build_task(spec(tmp_path), {"name": "emb25"}, opts(bucket="pax-abc"), Pricing())
    assert isinstance(task, sky.Task) and task.name == "pax-run-7"
    res = list(task.resources)
    assert {list(r.accelerators)[0] for r in res} == {"L4", "A10G"}
    for r in res:
        assert r.use_spot and r.job_recovery["strategy"] == "FAILOVER"
        assert r.job_recovery["max_restarts_on_errors"] == 0  # pax alone retries crashes
        assert list(r.image_id.values()) == [IMAGE]
    assert task.envs["PAX_RUN_ID"] == "7" and '"name":"emb25"' in task.envs["PAX_SPEC_JSON"]
    assert "PAX_RUNNER_URL" not in task.envs  # no runner URL: no inbound connection at all
    assert TOKEN not in str(task.envs) and TOKEN not in repr(task)  # a secret, not an env
    assert "PAX_RUN_TOKEN" in task.secrets
    storage = task.storage_mounts["/pax"]
    assert storage.name == "pax-abc" and storage.mode == sky.StorageMode.MOUNT_CACHED
    assert "RUN_DIR=/pax/runs/${PAX_RUN_ID}" in task.run  # per run: recovery resumes it
    with_url = build_task(spec(tmp_path), {}, opts(runner_url="https://pax.example.org"))
    assert with_url.envs["PAX_RUNNER_URL"] == "https://pax.example.org"


def test_a_private_images_registry_login_travels_as_secrets(sky, tmp_path):
    """Nothing handed a cloud VM the credentials to pull a private image; now SkyPilot gets its
    docker-login secrets, never in the task's plain env or its printed YAML."""
    from runner.launch.skypilot import build_task, redacted_yaml, registry_login, task_config
    from runner.settings import Settings

    login = registry_login(
        Settings(
            sky_registry_server="ghcr.io",
            sky_registry_username="pax-bot",
            sky_registry_password="ghp_s3cret-registry-token",
        )
    )
    doc = task_config(spec(tmp_path), {}, opts(), login=login)
    assert doc["secrets"]["SKYPILOT_DOCKER_PASSWORD"] == "ghp_s3cret-registry-token"
    assert not any(k.startswith("SKYPILOT_DOCKER") for k in doc["envs"])
    assert "ghp_s3cret" not in redacted_yaml(doc)
    task = build_task(spec(tmp_path), {}, opts(), login=login)
    assert "ghp_s3cret" not in str(task.envs) and "ghp_s3cret" not in repr(task)
    got = {r.docker_login_config.server for r in task.resources}
    assert got == {"ghcr.io"}  # SkyPilot will log in there before pulling the image
    with pytest.raises(ValueError, match="go together"):
        registry_login(Settings(sky_registry_server="ghcr.io"))
    assert registry_login(Settings()) == {}  # a public image needs none


def test_the_run_script_writes_only_the_bucket_and_tmp(sky):
    """The job's image folders are read-only to it: every path the script writes or changes
    into is under /pax (the bucket) or /tmp."""
    from runner.launch.skypilot import TEMPLATE

    run = yaml.safe_load(TEMPLATE.read_text())["run"]
    written = re.findall(r"(?:mkdir -p|cd|>|--output|--reports|--run-dir)\s+\"?([^\s\"]+)", run)
    assert written, run
    for path in written:
        path = path.replace('"$RUN_DIR', "/pax/runs").replace("$RUN_DIR", "/pax/runs")
        assert path.startswith(("/pax", "/tmp", "data/", "$RUN_DIR")), path
    assert "cd /pax/cache" in run  # relative outputs (data/...) land in the bucket's cache


def test_yaml_round_trip(sky, tmp_path):
    from runner.launch.skypilot import build_task

    task = build_task(spec(tmp_path), {"name": "emb25"}, opts())
    again = sky.Task.from_yaml_config(task.to_yaml_config())
    assert {str(r) for r in again.resources} == {str(r) for r in task.resources}
    assert again.envs == task.envs and again.run == task.run


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"accelerators": ("L4", "TPU-X")}, "sky.accelerators"),
        ({"accelerators": ()}, "sky.accelerators"),
        ({"accelerators": ("L40S",)}, "accelerator='L40S' has no price"),
        ({"image": "ghcr.io/x/pax"}, "sky.image"),
        ({"image": "docker:ghcr.io/x/pax:latest"}, "not pinned by digest"),
        ({"runner_url": "http://127.0.0.1:8000"}, "loopback or private"),
        ({"runner_url": "https://10.0.0.5"}, "loopback or private"),
        ({"runner_url": "https://pax.local"}, "loopback or private"),
        ({"runner_url": "http://pax.example.org"}, "use https"),
    ],
)
def test_what_skypilot_does_not_check_is_refused_before_any_launch(sky, tmp_path, kw, field):
    from runner.launch.skypilot import build_task

    with pytest.raises(ValueError, match=re.escape(field)):
        build_task(spec(tmp_path), {}, opts(**kw), Pricing())


@pytest.mark.parametrize(
    "record,phase,code",
    [
        ({"status": "PENDING"}, PENDING, None),
        ({"status": "STARTING"}, PENDING, None),
        ({"status": "RUNNING"}, RUNNING, None),
        ({"status": "RECOVERING"}, RECOVERING, None),
        ({"status": "ManagedJobStatus.SUCCEEDED"}, EXITED, 0),
        ({"status": "FAILED"}, EXITED, 1),
        ({"status": "FAILED_PRECHECKS"}, EXITED, 2),
        ({"status": "CANCELLED"}, EXITED, 75),
    ],
)
def test_skypilot_states_as_the_scheduler_reads_them(record, phase, code):
    from runner.launch.sky_records import state_of

    st = state_of(record, use_spot=True)
    assert (st.phase, st.code) == (phase, code)
    assert st.ended_outside == (record["status"] == "CANCELLED")


def test_usage_is_the_gpu_provisioned_and_the_vm_time_from_provisioning_to_now():
    """Attempts were charged from RUNNING only: provisioning, the image pull and a recovery's
    new machines were never paid. Now a job's attempts add up to its whole time since SkyPilot
    began provisioning (`submitted_at`): the first from there, a recovered one from where the
    stretches SkyPilot counted end (so its machines' provisioning is in it)."""
    from runner.launch.sky_records import state_of

    first = {
        "status": "RUNNING",
        "accelerators": {"L4": 1},
        "submitted_at": 40.0,  # STARTING: the controller provisions
        "start_at": 100.0,  # RUNNING
        "now": 300.0,
    }
    st = state_of(first, use_spot=True)
    assert st.usage.seconds == 260.0 and st.recoveries == 0
    # preempted at 300 (job_duration: 200 s of running), RECOVERING, running again from 400
    st = state_of(
        {
            **first,
            "accelerators": {"A100": 1},
            "last_recovered_at": 400.0,
            "now": 1000.0,
            "recovery_count": 1,
            "job_duration": 200.0,
            "cloud": "gcp",
        },
        use_spot=True,
    )
    assert st.usage.accelerator == "A100" and st.usage.spot is True
    assert st.prior_seconds == 60.0 + 200.0  # the first machines: provisioning + running
    assert st.usage.seconds == 100.0 + 600.0  # the new machines: their provisioning + running
    assert st.prior_seconds + st.usage.seconds == 1000.0 - 40.0  # the job's whole VM time
    assert st.usage.resources == {"cloud": "gcp"}
    # an older record without submitted_at: from RUNNING, as SkyPilot counts it
    assert state_of({**first, "submitted_at": None}, use_spot=True).usage.seconds == 200.0
    assert (
        state_of({"status": "STARTING", "submitted_at": 40.0, "now": 99.0}, True).usage.seconds
        is None
    )


class FakeAdapter:
    """Stands for the cloud: records calls, answers with scripted job records."""

    def __init__(self):
        self.launched, self.cancelled, self.records, self.queue_calls = [], [], {}, 0

    def launch(self, task, name):
        self.launched.append((task, name))
        return 41 + len(self.launched)

    def queue(self, job_ids):
        self.queue_calls += 1
        return [self.records[j] for j in job_ids if j in self.records]

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def launch_cluster(self, task, cluster, idle_minutes):
        self.launched.append((task, cluster, idle_minutes))
        return 3

    def cluster_job_status(self, cluster, job_id):
        return self.records.get((cluster, job_id))

    def down(self, cluster):
        self.cancelled.append(cluster)


def test_launcher_over_the_adapter(sky, tmp_path, caplog):
    from runner.launch.skypilot import SkyPilotLauncher

    fake = FakeAdapter()
    launcher = SkyPilotLauncher(opts(), adapter=fake, pricing=Pricing())
    with caplog.at_level(logging.DEBUG):
        job = launcher.start(spec(tmp_path))
        other = launcher.start(spec(tmp_path, run_id=8))
    assert (job, other) == ("42", "43") and fake.launched[0][1] == "pax-run-7"
    assert TOKEN not in caplog.text  # SkyPilot prints secrets in clear: we never log the task
    fake.records[42] = {"job_id": 42, "status": "RUNNING"}
    seen = launcher.observe([job, other])
    assert fake.queue_calls == 1  # every job in one request
    assert seen[job].phase == RUNNING and seen[other] == NOT_OURS
    assert launcher.costliest() == "A10G"  # budget caps are checked against the dearest GPU
    launcher.stop(job, 10)
    assert fake.cancelled == [42]


def test_plain_cluster_autostops_and_is_torn_down(sky, tmp_path):
    from runner.launch.skypilot import SkyPilotLauncher

    fake = FakeAdapter()
    launcher = SkyPilotLauncher(opts(managed=False, idle_minutes=7), adapter=fake)
    job = launcher.start(spec(tmp_path))
    assert job == "cluster:pax-run-7:3" and fake.launched[0][2] == 7
    fake.records[("pax-run-7", 3)] = "RUNNING"
    assert launcher.observe([job])[job].phase == RUNNING
    fake.records[("pax-run-7", 3)] = "SUCCEEDED"
    assert launcher.observe([job])[job].code == 0
    launcher.stop(job, 5)
    assert fake.cancelled == ["pax-run-7"]


def test_the_task_template_ships_with_the_package_and_sky_holds_no_code():
    from runner.launch.skypilot import TEMPLATE
    from tests.conftest import ROOT

    doc = yaml.safe_load(TEMPLATE.read_text())
    assert doc["resources"]["use_spot"] is True and "job_recovery" in doc["resources"]
    assert doc["file_mounts"]["/pax"]["mode"] == "MOUNT_CACHED"
    assert "PAX_RUN_TOKEN" in doc["secrets"] and "PAX_RUN_TOKEN" not in doc["envs"]
    assert sorted(p.suffix for p in (ROOT / "sky").iterdir()) <= [".md", ".yaml"]


@pytest.mark.parametrize(
    "env,says",
    [
        ({"sky_image": "docker:pax:latest"}, "not pinned by digest"),
        ({"sky_image": IMAGE, "sky_runner_url": "http://localhost:8000"}, "loopback"),
        ({"sky_image": IMAGE, "sky_accelerators": ["L40S"]}, "no price"),
        ({"sky_image": IMAGE}, "hear nothing from its cloud jobs"),
    ],
)
def test_the_service_refuses_a_cloud_set_up_that_could_not_finish_a_run(sky, tmp_path, env, says):
    from runner.app import create_app
    from runner.settings import Settings

    with pytest.raises(ValueError, match=says):
        create_app(Settings(db=tmp_path / "pax.db", sky=True, **env))


@pytest.fixture
def sky_service(sky, tmp_path):
    from tests.runner.conftest import in_process

    with in_process(
        tmp_path,
        sky=True,
        sky_image=IMAGE,
        sky_accelerators=["L4", "A100"],
        sky_bucket_path=str(tmp_path / "bucket"),
        sky_concurrency=0,  # nothing is launched: this is about what is submitted
    ) as svc:
        yield svc


def test_sky_launch_forecasts_asks_and_submits_through_the_service(sky_service, tmp_path):
    from pax.client import Client
    from pax.sky_cli import sky_launch
    from tests.conftest import ROOT
    from tests.runner.conftest import ADMIN

    said, asked = [], []
    client = Client(token=ADMIN, http=sky_service.http)
    dry = sky_launch(
        ROOT / "configs" / "embed_ratio.yaml",
        exp=None,
        confirm=lambda m: pytest.fail("a dry run asks nothing"),
        log=said.append,
        dry_run=True,
        client=client,
    )
    assert dry["dry_run"] and dry["runs"] == 3
    assert "<redacted>" in dry["task_yaml"] and IMAGE in dry["task_yaml"]
    assert "no inbound connection" in said[0] and "3 spot runs, 15.0M tokens" in said[0]
    f = dry["forecast"]
    assert set(f["by_accelerator"]) == {"L4", "A100"} and 0 < f["low_usd"] <= f["high_usd"]
    assert f["by_accelerator"]["L4"]["startup_overhead_s"] == 3 * 300  # one start-up per job
    out = sky_launch(
        ROOT / "configs" / "embed_ratio.yaml",
        exp="emb25",
        confirm=lambda m: asked.append(m) or False,
        log=said.append,
        client=client,
    )
    assert out["confirmed"] is False and sky_service.get("/runs").json()["total"] == 0
    out = sky_launch(
        ROOT / "configs" / "embed_ratio.yaml",
        exp="emb25",
        confirm=lambda m: True,
        log=said.append,
        client=client,
    )
    run = sky_service.run(out["submitted"]["id"])
    assert (
        run["name"] == "emb25"
        and run["launcher_wanted"] == "skypilot"
        and run["status"] == "queued"
    )


def test_a_run_may_not_ask_for_a_launcher_this_service_lacks(service, tokenized_dir):

    r = service.post(
        "/runs", json={"config": tiny_raw(tokenized_dir.parent), "launcher": "skypilot"}
    )
    assert r.status_code == 422 and "PAX_SKY" in r.text
