"""SkyPilot launcher: each run a managed spot job with recovery (pip install .[cloud]).

`build_task(run)` is pure: it fills sky/train.yaml for one run and returns a real `sky.Task`,
after checking what SkyPilot itself does not (accelerator names, a docker: image, spot on).
The run token is a SkyPilot *secret*, never an env and never logged. Cloud calls go through
`SkyAdapter` alone.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.launch.base import RUNNING, UNKNOWN, LaunchSpec
from runner.launch.sky_adapter import SkyAdapter

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "sky" / "train.yaml"
KNOWN_GPUS = {"T4", "L4", "A10G", "A10", "A100", "A100-80GB", "H100", "H200", "L40S", "V100"}
# SkyPilot managed-job states -> what the scheduler needs to know
DONE = {
    "SUCCEEDED": 0,
    "CANCELLED": 75,
    "FAILED": 1,
    "FAILED_SETUP": 2,
    "FAILED_PRECHECKS": 2,
    "FAILED_NO_RESOURCE": 1,
    "FAILED_CONTROLLER": 1,
}


@dataclass(frozen=True)
class SkyOptions:
    image: str = "docker:ghcr.io/example/pax:latest"
    accelerators: tuple[str, ...] = ("L4", "A10G", "A100")
    use_spot: bool = True
    bucket: str = "pax-checkpoints"
    max_restarts_on_errors: int = 2
    vocabs: str = "16000 8000"
    extra_envs: dict = field(default_factory=dict)
    managed: bool = True  # managed spot job with recovery; False: a plain autostop+down cluster
    idle_minutes: int = 10  # plain clusters: autostop (and down) after this long idle


def validate_options(o: SkyOptions) -> None:
    unknown = sorted(set(o.accelerators) - KNOWN_GPUS)
    if unknown:
        raise ValueError(
            f"sky.accelerators: unknown GPU names {unknown}; use some of {sorted(KNOWN_GPUS)}"
        )
    if not o.accelerators:
        raise ValueError("sky.accelerators: name at least one acceptable GPU")
    if not o.image.startswith("docker:") or len(o.image) <= len("docker:"):
        raise ValueError(
            f"sky.image={o.image!r}: must be docker:<image>, e.g. docker:ghcr.io/you/pax:latest"
        )
    if not o.use_spot:
        raise ValueError(
            "sky.use_spot: the study runs on spot instances; set it true (or "
            "use the docker launcher on a machine you own)"
        )


def task_config(spec: LaunchSpec, config: dict, opts: SkyOptions) -> dict:
    validate_options(opts)
    doc = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    doc["name"] = f"pax-run-{spec.run_id}"
    res = doc["resources"]
    res["any_of"] = [{"accelerators": f"{g}:1"} for g in opts.accelerators]
    res["use_spot"] = opts.use_spot
    res["job_recovery"]["max_restarts_on_errors"] = opts.max_restarts_on_errors
    res["image_id"] = opts.image
    doc["file_mounts"]["/pax"]["name"] = opts.bucket
    doc["envs"].update(
        {
            "PAX_RUNNER_URL": spec.env["PAX_RUNNER_URL"],
            "PAX_RUN_ID": str(spec.run_id),
            "PAX_SPEC_JSON": json.dumps(config, separators=(",", ":")),
            "PAX_VOCABS": opts.vocabs,
            **opts.extra_envs,
        }
    )
    doc["secrets"] = {"PAX_RUN_TOKEN": spec.env["PAX_RUN_TOKEN"]}
    return doc


def build_task(spec: LaunchSpec, config: dict, opts: SkyOptions | None = None):
    """A real sky.Task for one run (no cloud call)."""
    import sky

    doc = task_config(spec, config, opts or SkyOptions())
    secrets = doc.pop("secrets")
    # secrets are added after parsing: SkyPilot keeps the parsed YAML text (and prints it), so
    # the token must not be in it
    task = sky.Task.from_yaml_config(doc)
    task.update_secrets(secrets)
    return task


class SkyPilotLauncher:
    name = "skypilot"

    def __init__(self, opts: SkyOptions | None = None, adapter: SkyAdapter | None = None):
        self.opts = opts or SkyOptions()
        self.adapter = adapter or SkyAdapter()

    def start(self, spec: LaunchSpec) -> str:
        config = yaml.safe_load(Path(spec.config_path).read_text())["base"]
        task = build_task(spec, config, self.opts)
        name = f"pax-run-{spec.run_id}"
        if self.opts.managed:
            return str(self.adapter.launch(task, name=name))
        job = self.adapter.launch_cluster(task, name, self.opts.idle_minutes)
        return f"cluster:{name}:{job}"

    def poll(self, backend_id: str) -> int | str | None:
        if backend_id.startswith("cluster:"):
            _, cluster, job = backend_id.split(":")
            status = self.adapter.cluster_job_status(cluster, int(job))
        else:
            status = self.adapter.status(int(backend_id))
        if status is None:
            return UNKNOWN
        return DONE.get(status, RUNNING)  # PENDING, STARTING, RUNNING, RECOVERING...

    def stop(self, backend_id: str, grace_s: float) -> None:
        if backend_id.startswith("cluster:"):
            self.adapter.down(backend_id.split(":")[1])  # a plain cluster: tear it down
        else:
            self.adapter.cancel(int(backend_id))  # managed jobs tear their cluster down

    def alive(self) -> list[str]:
        return []  # managed jobs are polled one by one; nothing is tracked in memory

    def exited(self) -> list[str]:
        return []
