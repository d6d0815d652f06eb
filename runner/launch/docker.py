"""Docker launcher: each trainer job in its own container of the pax image, with docker or
podman (the same command line).

Where the trainer reaches the service: the URL this launcher is given (`runner_url`, e.g.
http://service:8000 on a compose network), else the service's own URL, which must not be the
loopback of the machine unless the containers share its network (`network: host`): a
container's 127.0.0.1 is itself. Who writes the run folder: the user that owns it on the host
(the service's, or the image's uid 10001 when the service runs as root or in the image), so
what the trainer writes there is the service's to read.

The command line is built by a pure function (unit-tested); the run token travels in the
environment of the engine's client (`--env PAX_RUN_TOKEN` without a value), so it never shows
in `ps` or in the command we log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from runner.launch.base import (
    ALIVE,
    EXITED,
    NOT_OURS,
    JobState,
    Launcher,
    LaunchSpec,
    hand_over,
    trainer_args,
    trainer_env,
)
from runner.ledger.attempts import Placement

IMAGE_UID = 10001  # the image's user (Dockerfile)
LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


@dataclass(frozen=True)
class DockerOptions:
    image: str = "pax:latest"
    engine: str = "docker"  # or podman
    gpus: str | None = "all"  # None: CPU only
    data_dir: Path = Path("data")
    network: str | None = None  # the compose network (then runner_url names the service), or host
    runner_url: str | None = None  # what trainers post to; None: the service's own URL
    extra_args: tuple[str, ...] = ()


def container_name(spec: LaunchSpec) -> str:
    return f"pax-run-{spec.run_id}-a{spec.attempt}"


def trainer_url(service_url: str, opts: DockerOptions) -> str:
    """The URL a trainer in a container posts to; ValueError when it could only be the
    container's own loopback."""
    url = opts.runner_url or service_url
    if urlparse(url).hostname in LOOPBACK and opts.network != "host":
        raise ValueError(
            f"trainers in containers would post to {url}, their own loopback: set "
            "PAX_DOCKER_RUNNER_URL to an address they reach (http://service:8000 with "
            "PAX_DOCKER_NETWORK=<the compose network>), or PAX_DOCKER_NETWORK=host"
        )
    return url


def run_as(run_dir: Path) -> str:
    """uid:gid the trainer runs as: the run folder's owner, or the image's user for a folder
    of root's (which is then handed to it)."""
    st = run_dir.stat()
    if st.st_uid == 0:
        hand_over(run_dir, IMAGE_UID, IMAGE_UID)
        return f"{IMAGE_UID}:{IMAGE_UID}"
    return f"{st.st_uid}:{st.st_gid}"


def run_command(spec: LaunchSpec, opts: DockerOptions, user: str | None = None) -> list[str]:
    run_dir = str(Path(spec.run_dir).resolve())
    cmd = [
        opts.engine,
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
        "--env",
        f"HOME={run_dir}",  # caches go into the run folder: always writable by its user
    ]
    if user:
        cmd += ["--user", user]
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


ENGINE_CONFIG = ("DOCKER_", "CONTAINERS_", "CONTAINER_", "XDG_RUNTIME_DIR", "REGISTRY_AUTH_FILE")


def engine_config(source=None) -> dict[str, str]:
    """The engine client's own settings from this environment (which daemon, which config)."""
    source = os.environ if source is None else source
    return {k: v for k, v in source.items() if k.startswith(ENGINE_CONFIG)}


def engine_available(engine: str = "docker") -> bool:
    if shutil.which(engine) is None:
        return False
    try:
        return subprocess.run([engine, "info"], capture_output=True, timeout=30).returncode == 0
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
        url = trainer_url(spec.env.get("PAX_RUNNER_URL", ""), self.opts)
        # the engine's client gets the allowed environment and its own configuration (never
        # passed on); the container then receives just the run's own variables (--env NAME,
        # values from this client)
        env = {**trainer_env({**spec.env, "PAX_RUNNER_URL": url}), **engine_config()}
        cmd = run_command(spec, self.opts, user=run_as(spec.run_dir))
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if out.returncode != 0:
            raise OSError(f"{self.opts.engine} run failed: {out.stderr.strip()[:500]}")
        return container_name(spec)

    def poll(self, backend_id: str) -> JobState:
        out = subprocess.run(
            [
                self.opts.engine,
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                backend_id,
            ],
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
            [self.opts.engine, "stop", "--time", str(int(grace_s)), backend_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
