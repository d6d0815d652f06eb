"""Docker launcher: each trainer job in its own container of the pax image.

The command line is built by a pure function (unit-tested); the run token travels in the
environment of the `docker` client (`-e PAX_RUN_TOKEN` without a value), so it never shows in
`ps` or in the command we log.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.launch.base import (
    ALIVE,
    EXITED,
    NOT_OURS,
    JobState,
    Launcher,
    LaunchSpec,
    trainer_args,
    trainer_env,
)
from runner.ledger.attempts import Placement


@dataclass(frozen=True)
class DockerOptions:
    image: str = "pax:latest"
    gpus: str | None = "all"  # None: CPU only
    data_dir: Path = Path("data")
    network: str | None = None  # e.g. the compose network, so the service is reachable
    extra_args: tuple[str, ...] = ()


def container_name(spec: LaunchSpec) -> str:
    return f"pax-run-{spec.run_id}-a{spec.attempt}"


def run_command(spec: LaunchSpec, opts: DockerOptions) -> list[str]:
    run_dir = str(Path(spec.run_dir).resolve())
    cmd = [
        "docker",
        "run",
        "--detach",
        "--name",
        container_name(spec),
        "--label",
        f"pax.run_id={spec.run_id}",
        "--label",
        f"pax.attempt={spec.attempt}",
        "--volume",
        f"{run_dir}:{run_dir}",
        "--volume",
        f"{Path(opts.data_dir).resolve()}:/var/lib/pax/data:ro",  # data/ of the image
        "--stop-timeout",
        "60",
    ]
    if opts.gpus:
        cmd += ["--gpus", opts.gpus]
    if opts.network:
        cmd += ["--network", opts.network]
    for key in sorted(spec.env):
        cmd += ["--env", key]  # value from the client's environment: secrets stay out of argv
    return [
        *cmd,
        *opts.extra_args,
        opts.image,
        *trainer_args(Path(spec.config_path).resolve(), run_dir),
    ]


def engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class DockerLauncher(Launcher):
    name = "docker"
    kinds = ("docker", "local")
    takes_unassigned = True

    def __init__(self, opts: DockerOptions | None = None, place: Placement = Placement()):
        self.opts = opts or DockerOptions()
        self.place = place

    def placement(self) -> Placement:
        return self.place

    def observe(self, backend_ids: list[str]) -> dict[str, JobState]:
        return {b: self.poll(b) for b in backend_ids}

    def start(self, spec: LaunchSpec) -> str:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        # the docker client itself gets only the allowed environment; the container then
        # receives just the run's own variables (--env NAME, values from this client)
        env = trainer_env(spec.env)
        out = subprocess.run(
            run_command(spec, self.opts), capture_output=True, text=True, env=env, timeout=120
        )
        if out.returncode != 0:
            raise OSError(f"docker run failed: {out.stderr.strip()[:500]}")
        return container_name(spec)

    def poll(self, backend_id: str) -> JobState:
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", backend_id],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            return NOT_OURS
        status, code = out.stdout.split()
        if status in ("created", "running", "restarting", "paused"):
            return ALIVE
        return JobState(EXITED, code=int(code))

    def stop(self, backend_id: str, grace_s: float) -> None:
        subprocess.Popen(
            ["docker", "stop", "--time", str(int(grace_s)), backend_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
