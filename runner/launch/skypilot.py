"""SkyPilot launcher: each run a managed job with recovery (pip install .[cloud]).

`build_task` fills runner/launch/sky_task.yaml for one run and returns a real `sky.Task`, after
checking what SkyPilot itself does not: GPU names and prices, an image pinned by digest, and a
runner URL the cloud can actually reach (or none: no-inbound mode, where the job's outbox in the
bucket is all the service hears). The run token is a SkyPilot *secret*, never an env and never
logged. Cloud calls go through `SkyAdapter` alone; jobs are observed in one `queue` call per
scheduler tick, and judged by SkyPilot's own states: a job waiting for capacity or recovering
from a preemption is never cancelled by a lease.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from urllib.parse import urlparse

import yaml

from runner.launch.base import EXITED, PENDING, JobState, Launcher, LaunchError, LaunchSpec
from runner.launch.sky_adapter import SkyAdapter
from runner.launch.sky_errors import classify
from runner.launch.sky_records import state_of
from runner.ledger.attempts import Placement

log = logging.getLogger("pax.scheduler")
TEMPLATE = resources.files("runner.launch") / "sky_task.yaml"  # shipped with the package
PROVISIONAL = "launching:"  # a run's backend id while SkyPilot's launch call is still out
QUEUE_TIMEOUT_S = 60.0  # `sky jobs queue` answers in seconds; longer is an outage
KNOWN_GPUS = {"T4", "L4", "A10G", "A10", "A100", "A100-80GB", "H100", "H200", "L40S", "V100"}
REACHING_THE_SERVICE = (
    "cloud jobs cannot reach it. Either put the service behind a public HTTPS URL (a reverse "
    "proxy with TLS, or a tunnel: docs/deploy.md) and set PAX_SKY_RUNNER_URL to it, or leave "
    "PAX_SKY_RUNNER_URL unset: no inbound connection at all, the jobs write their outbox to the "
    "bucket and the service reads it (PAX_SKY_BUCKET_PATH: a mount of the bucket, or s3://...)"
)


@dataclass(frozen=True)
class SkyOptions:
    image: str | None = None  # docker:<image>@sha256:<digest>
    accelerators: tuple[str, ...] = ("L4", "A10G", "A100")
    use_spot: bool = True
    cloud: str | None = None
    region: str | None = None
    bucket: str = "pax-checkpoints"
    store: str | None = None  # s3, gcs, r2: where the bucket lives (None: SkyPilot picks)
    runner_url: str | None = None  # what the jobs post to; None: no inbound connection
    # pax's attempts (PAX_MAX_ATTEMPTS) are a run's one retry budget: a crashed job ends
    # FAILED and pax queues it again as a new job that resumes from the bucket's checkpoint,
    # so SkyPilot restarts nothing itself (preemptions are still recovered by SkyPilot)
    max_restarts_on_errors: int = 0
    vocabs: str = "16000 8000"
    extra_envs: dict = field(default_factory=dict)
    managed: bool = True  # a managed job with recovery; False: a plain autostop+down cluster
    idle_minutes: int = 10  # plain clusters: autostop (and down) after this long idle
    allow_unpinned: bool = False  # an image by tag (tests, dry runs), not by digest

    @classmethod
    def from_settings(cls, settings, bucket: str) -> SkyOptions:
        from runner.launch.sky_probe import store_of

        return cls(
            image=settings.sky_image,
            accelerators=tuple(settings.sky_accelerators),
            use_spot=settings.sky_spot,
            cloud=settings.sky_cloud,
            region=settings.sky_region,
            bucket=settings.sky_bucket or bucket,
            store=store_of(settings.sky_bucket_path),
            runner_url=settings.sky_runner_url,
        )


def bucket_for(settings, ledger: str | None) -> str:
    """The checkpoint bucket's name: PAX_SKY_BUCKET, else pax-<ledger id>, unique to the
    ledger (the one place this name is made)."""
    return settings.sky_bucket or f"pax-{(ledger or 'ledger')[:16]}"


def check_runner_url(url: str | None) -> None:
    """A URL cloud jobs can reach: public, and https (the run token travels with every post)."""
    if not url:
        return
    parsed = urlparse(url)
    host = parsed.hostname or ""
    private = host in ("localhost", "") or host.endswith((".local", ".internal", ".lan"))
    try:
        ip = ipaddress.ip_address(host)
        private = private or not ip.is_global
    except ValueError:
        pass
    if private:
        raise ValueError(
            f"sky.runner_url={url!r} is a loopback or private address: " + REACHING_THE_SERVICE
        )
    if parsed.scheme != "https":
        raise ValueError(
            f"sky.runner_url={url!r}: use https (each post carries the run's token); "
            + REACHING_THE_SERVICE
        )


def validate_options(o: SkyOptions, pricing=None) -> None:
    if not o.accelerators:
        raise ValueError("sky.accelerators: name at least one acceptable GPU")
    unknown = sorted(set(o.accelerators) - KNOWN_GPUS)
    if unknown:
        raise ValueError(
            f"sky.accelerators: unknown GPU names {unknown}; use some of {sorted(KNOWN_GPUS)}"
        )
    if pricing is not None:
        for gpu in o.accelerators:  # never a GPU that would be charged $0 by omission
            pricing.price_for(gpu, o.use_spot)
    if not o.image or not o.image.startswith("docker:") or len(o.image) <= len("docker:"):
        raise ValueError(
            f"sky.image={o.image!r}: set PAX_SKY_IMAGE to docker:<image>@sha256:<digest> (the "
            "digest the image workflow prints on a release)"
        )
    if "@sha256:" not in o.image and not o.allow_unpinned:
        raise ValueError(
            f"sky.image={o.image!r} is not pinned by digest: a tag can move between a run and "
            "its recovery. Use docker:<image>@sha256:<digest>"
        )
    check_runner_url(o.runner_url)


# SkyPilot's docker login, read from a task's secrets (all three together)
REGISTRY_SECRETS = (
    "SKYPILOT_DOCKER_SERVER",
    "SKYPILOT_DOCKER_USERNAME",
    "SKYPILOT_DOCKER_PASSWORD",
)


def registry_login(settings) -> dict[str, str]:
    """The docker-login secrets of a private image, from the settings ({} for a public one);
    ValueError when only some are set."""
    values = (
        settings.sky_registry_server,
        settings.sky_registry_username,
        settings.sky_registry_password,
    )
    if not any(values):
        return {}
    if not all(values):
        raise ValueError(
            "PAX_SKY_REGISTRY_SERVER, PAX_SKY_REGISTRY_USERNAME and PAX_SKY_REGISTRY_PASSWORD "
            "go together: set all three for a private image, or none for a public one"
        )
    return dict(zip(REGISTRY_SECRETS, values, strict=True))


def task_config(
    spec: LaunchSpec, config: dict, opts: SkyOptions, pricing=None, login: dict | None = None
) -> dict:
    """The task's YAML for one run (its run token, and a private image's registry login, under
    `secrets`: SkyPilot keeps them out of the task's plain env and its logs)."""
    validate_options(opts, pricing)
    doc = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    doc["name"] = f"pax-run-{spec.run_id}"
    res = doc["resources"]
    choice = {k: v for k, v in (("cloud", opts.cloud), ("region", opts.region)) if v}
    res["any_of"] = [{"accelerators": f"{g}:1", **choice} for g in opts.accelerators]
    res["use_spot"] = opts.use_spot
    res["job_recovery"]["max_restarts_on_errors"] = opts.max_restarts_on_errors
    res["image_id"] = opts.image
    doc["file_mounts"]["/pax"]["name"] = opts.bucket
    if opts.store:  # the store this host reads (PAX_SKY_BUCKET_PATH): the same bucket
        doc["file_mounts"]["/pax"]["store"] = opts.store
    doc["envs"].update(
        {
            "PAX_RUN_ID": str(spec.run_id),
            "PAX_SPEC_JSON": json.dumps(config, separators=(",", ":")),
            "PAX_VOCABS": opts.vocabs,
            "PAX_HEARTBEAT_S": spec.env.get("PAX_HEARTBEAT_S", doc["envs"]["PAX_HEARTBEAT_S"]),
            **opts.extra_envs,
        }
    )
    if opts.runner_url:  # otherwise no inbound connection: the job's outbox is in the bucket
        doc["envs"]["PAX_RUNNER_URL"] = opts.runner_url
    doc["secrets"] = {"PAX_RUN_TOKEN": spec.env["PAX_RUN_TOKEN"], **(login or {})}
    return doc


def redacted_yaml(doc: dict) -> str:
    """The exact task, as `pax sky launch --dry-run` prints it: secrets shown as <redacted>."""
    shown = {**doc, "secrets": {k: "<redacted>" for k in doc.get("secrets", {})}}
    return yaml.safe_dump(shown, sort_keys=False)


def build_task(
    spec: LaunchSpec, config: dict, opts: SkyOptions, pricing=None, login: dict | None = None
):
    """A real sky.Task for one run (no cloud call)."""
    import sky

    doc = task_config(spec, config, opts, pricing, login)
    secrets = doc.pop("secrets")
    # secrets are added after parsing: SkyPilot keeps the parsed YAML text (and prints it), so
    # the token must not be in it
    task = sky.Task.from_yaml_config(doc)
    task.update_secrets(secrets)
    return task


class SkyPilotLauncher(Launcher):
    name = "skypilot"
    kinds = ("skypilot",)
    starts_pending = True  # a submitted job waits for SkyPilot to provision it

    def __init__(
        self,
        opts: SkyOptions,
        adapter: SkyAdapter | None = None,
        pricing=None,
        takes_unassigned: bool = False,
        bucket_path: str | None = None,
        login: dict | None = None,
        poll_s: float = 0.0,
        launch_wait_s: float = 2.0,
        call_timeout_s: float = 600.0,
        clock=time.time,
    ):
        self.opts = opts
        # the launch call runs off the scheduler's tick: waited for `launch_wait_s` at most,
        # then collected by observe(); one out longer than `call_timeout_s` is given up (the
        # run's launch is retried) and the job it makes, if it ever returns, cancelled
        self.launch_wait_s = launch_wait_s
        self.call_timeout_s = call_timeout_s
        self.clock = clock
        self.calls = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sky-launch")
        self.out: dict[str, tuple[cf.Future, float]] = {}  # provisional id -> (call, since)
        self.poll_s = poll_s  # PAX_SKY_POLL_S: one `sky jobs queue` (and bucket read) per poll
        self.login = login or {}  # a private image's registry login (secrets, never in opts)
        self.adapter = adapter or SkyAdapter()
        self.pricing = pricing
        self.takes_unassigned = takes_unassigned
        # where this host reads the checkpoint bucket (a mount, or s3://...): each job's run
        # folder is /pax/runs/<id> in the job and <bucket_path>/runs/<id> here
        self.bucket_path = str(bucket_path).rstrip("/") if bucket_path else None
        self.heard_through_files = self.bucket_path is not None

    def run_dir_url(self, run_id: int, local) -> str:
        return f"{self.bucket_path}/runs/{run_id}" if self.bucket_path else str(local)

    def placement(self) -> Placement:
        # which GPU SkyPilot provisions is known once the job runs (observe reports it)
        return Placement(accelerator=None, spot=self.opts.use_spot)

    def costliest(self) -> str:
        """The dearest acceptable GPU: budget caps are checked against it."""
        priced = []
        for gpu in self.opts.accelerators:
            try:
                priced.append((self.pricing.hourly(gpu, self.opts.use_spot), gpu))
            except (AttributeError, ValueError):  # no pricing, or no price: start() refuses it
                continue
        return max(priced)[1] if priced else self.opts.accelerators[0]

    def start(self, spec: LaunchSpec) -> str:
        """The job's id; or, when SkyPilot has not answered within `launch_wait_s`, a
        provisional id that observe() resolves once it has (the tick never waits longer)."""
        config = yaml.safe_load(spec.config_path.read_text())["base"]
        task = build_task(spec, config, self.opts, self.pricing, self.login)
        call = self.calls.submit(self._launch, task, f"pax-run-{spec.run_id}")
        try:
            return call.result(timeout=self.launch_wait_s)  # its error is the launch's error
        except cf.TimeoutError:
            provisional = f"{PROVISIONAL}{spec.run_id}.{spec.attempt}"
            self.out[provisional] = (call, self.clock())
            return provisional

    def _launch(self, task, name: str) -> str:
        if self.opts.managed:
            return str(self.adapter.launch(task, name=name))
        job = self.adapter.launch_cluster(task, name, self.opts.idle_minutes)
        return f"cluster:{name}:{job}"

    def _resolve(self, provisional: str) -> JobState:
        """Where a launch that outlived the tick's wait stands."""
        got = self.out.get(provisional)
        if got is None:  # an earlier service's call: its answer is lost with it
            return JobState(
                EXITED,
                never_ran=True,
                cause="the service restarted while SkyPilot's launch call was out",
            )
        call, since = got
        if not call.done():
            waited = self.clock() - since
            if waited <= self.call_timeout_s:
                return JobState(PENDING, detail=f"SkyPilot's launch call out for {waited:.0f} s")
            del self.out[provisional]
            call.add_done_callback(self._cancel_late)  # a job it makes after all is not kept
            return JobState(
                EXITED,
                never_ran=True,
                cause=f"SkyPilot's launch call did not return within {self.call_timeout_s:.0f} s",
            )
        del self.out[provisional]
        try:
            return JobState(PENDING, job_id=call.result())
        except Exception as e:
            return JobState(PENDING, launch_error=self.launch_error(e))

    def _cancel_late(self, call: cf.Future) -> None:
        if call.cancelled() or call.exception() is not None:
            return
        backend_id = call.result()
        log.warning("a launch given up on returned job %s late: cancelling it", backend_id)
        try:
            self.stop(backend_id, 0)
        except Exception as e:  # said, so a user can cancel it by hand
            log.error("could not cancel the late job %s (%s): `sky jobs cancel` it", backend_id, e)

    def observe(self, backend_ids: list[str]) -> dict[str, JobState]:
        out: dict[str, JobState] = {
            b: self._resolve(b) for b in backend_ids if b.startswith(PROVISIONAL)
        }
        backend_ids = [b for b in backend_ids if not b.startswith(PROVISIONAL)]
        managed = [b for b in backend_ids if not b.startswith("cluster:")]
        if managed:
            # one call for all jobs, with a deadline (its error: judged again next poll)
            ask = self.calls.submit(self.adapter.queue, [int(b) for b in managed])
            records = ask.result(timeout=QUEUE_TIMEOUT_S)
            by_id = {str(r["job_id"]): r for r in records}
            out.update({b: self._state(by_id.get(b)) for b in managed})
        for b in backend_ids:
            if b.startswith("cluster:"):
                _, cluster, job = b.split(":")
                status = self.adapter.cluster_job_status(cluster, int(job))
                out[b] = self._state({"status": status} if status else None)
        return out

    def _state(self, rec: dict | None) -> JobState:
        st = state_of(rec, self.opts.use_spot, self.opts.accelerators)
        u = st.usage
        if st.phase == EXITED and u is not None and u.accelerator is None and u.seconds:
            # SkyPilot reports the GPU only while the cluster exists: a job that ran and ended
            # while the service was down is charged at the dearest GPU it could have had,
            # flagged (a GPU seen while it ran is kept: see attempts.end)
            st = replace(st, usage=replace(st.usage, assumed=self.costliest()))
        return st

    def launch_error(self, e: Exception) -> LaunchError:
        return classify(e)

    def job_log(self, backend_id: str, tail: int) -> str | None:
        """The job's own log from SkyPilot (set-up, image pull, the trainer's output): what a
        run page shows when no train.log reached this host."""
        if backend_id.startswith("cluster:") or not backend_id.isdigit():
            return None
        return self.adapter.job_log(int(backend_id), tail)

    def stop(self, backend_id: str, grace_s: float) -> None:
        if backend_id.startswith(PROVISIONAL):  # the launch is still out: cancel what it makes
            got = self.out.pop(backend_id, None)
            if got is not None:
                got[0].add_done_callback(self._cancel_late)
            return
        if backend_id.startswith("cluster:"):
            self.adapter.down(backend_id.split(":")[1])  # a plain cluster: tear it down
        else:
            self.adapter.cancel(int(backend_id))  # managed jobs tear their cluster down
