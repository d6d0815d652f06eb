"""Service settings: one pydantic-settings class, read from PAX_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAX_", extra="ignore")

    db: Path = Field(
        Path("var/pax.db"),
        description="SQLite ledger file; with PAX_DATABASE_URL, where the token files live.",
    )
    database_url: str | None = Field(
        None,
        description="The ledger as a SQLAlchemy URL, e.g. postgresql://user@host/pax "
        "(pip install .[postgres]); unset = the SQLite file PAX_DB. Several services may share "
        "one PostgreSQL ledger; one of them runs the scheduler.",
    )
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8000, ge=1, le=65535)
    concurrency: int = Field(
        1, ge=0, le=256, description="Runs launched at once; 0 = a pure ledger host."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token for mutating user routes; "
        "generated (0600, next to the db) when unset.",
    )
    worker_token: str | None = Field(
        None,
        description="Bearer token workers claim runs with (POST /claim only, never admin); "
        "generated (0600, next to the db) when unset.",
    )
    allowed_hosts: list[str] | None = Field(
        None,
        description="Host headers the service answers (against DNS rebinding); default: the "
        "bind host, localhost and 127.0.0.1. Behind a proxy or in compose, list the names "
        "clients use.",
    )
    docs: bool = Field(True, description="Serve the OpenAPI page at /docs (assets served locally).")
    trainer_env: list[str] = Field(
        default_factory=list,
        description="Extra environment variables a launched trainer may see (e.g. "
        "WANDB_API_KEY); everything else of the service's environment is withheld.",
    )
    trainer_user: str | None = Field(
        None,
        description="The user local trainers run as (the service must start as root): then "
        "they can't read the service's token files or ledger. Unset: the service's own user "
        "(docs/deploy.md, the security model).",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, le=2**30, description="Largest request body, unless named below."
    )
    max_metrics_body_bytes: int = Field(
        4 * 2**20, ge=1024, le=2**30, description="Largest metrics batch body."
    )
    max_result_body_bytes: int = Field(
        2 * 2**20, ge=1024, le=2**30, description="Largest result (metrics.json) body."
    )
    max_plan_body_bytes: int = Field(
        256 * 1024, ge=1024, le=2**30, description="Largest plan (YAML or JSON) body."
    )
    http_max_header_bytes: int = Field(
        64 * 1024,
        ge=4096,
        le=2**24,
        description="Largest request head (request line and headers); past it: 431.",
    )
    http_max_headers: int = Field(
        100, ge=10, le=10_000, description="Most header fields in a request; past it: 431."
    )
    http_head_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds a request's head may take to arrive; 408 after."
    )
    http_body_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Seconds a request's body may take to arrive; 408 after."
    )
    http_keep_alive_s: int = Field(
        5, ge=1, le=3600, description="Seconds an idle keep-alive connection stays open."
    )
    runs_root: Path = Field(Path("var/runs"), description="Where launched runs get directories.")
    reports_root: Path = Field(Path("reports"), description="Where sweep reports are written.")
    runner_url: str | None = Field(
        None, description="URL trainers use to reach the service (default http://<host>:<port>)."
    )
    lease_s: float = Field(
        60.0,
        gt=0,
        description="A running run with no heartbeat for this long is lost and requeued.",
    )
    heartbeat_s: float = Field(5.0, gt=0, description="Heartbeat interval asked of trainers.")
    startup_grace_s: float = Field(
        180.0,
        gt=0,
        description="Time a launched trainer has to "
        "send its first heartbeat (imports, data, model build).",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Times a run may train before it fails: its one retry budget, crashes, "
        "lost leases and cloud jobs alike (SkyPilot itself restarts nothing).",
    )
    launch_retry_s: float = Field(
        60.0,
        gt=0,
        description="A launch error that can pass (no capacity, a quota, the network) is "
        "retried after this long, doubled for each further error in a row.",
    )
    launch_retry_max_s: float = Field(
        1800.0, gt=0, description="The longest wait between launch retries."
    )
    stop_grace_s: float = Field(10.0, ge=0, description="SIGTERM -> SIGKILL grace on cancel.")
    tick_s: float = Field(0.5, gt=0, description="Scheduler loop interval.")
    max_points_per_post: int = Field(10_000, ge=1)
    launcher: Literal["local", "docker", "skypilot"] = Field(
        "local",
        description="How runs that ask for no launcher start: local processes, Docker "
        "containers (used when an engine answers), or SkyPilot managed jobs "
        "(pip install .[cloud]).",
    )
    sky: bool = Field(
        False,
        description="Also launch the runs that ask for SkyPilot (`pax sky launch`, "
        '"launcher": "skypilot"), beside the default launcher.',
    )
    docker_image: str = Field("pax:latest", description="Image for the docker launcher.")
    docker_engine: Literal["docker", "podman"] = Field(
        "docker", description="The docker launcher's engine (podman takes the same commands)."
    )
    docker_network: str | None = Field(
        None,
        description="The network trainer containers join: the compose network (with "
        "PAX_DOCKER_RUNNER_URL=http://service:8000), or host.",
    )
    docker_runner_url: str | None = Field(
        None,
        description="The URL trainer containers post to (default: the service's own, which must "
        "not be a loopback address unless PAX_DOCKER_NETWORK=host).",
    )
    docker_gpus: str | None = Field(
        "all", description="`--gpus` of trainer containers (empty: CPU only)."
    )
    docker_data_dir: Path = Field(
        Path("data"), description="The host folder mounted read-only as the containers' data/."
    )
    sky_concurrency: int = Field(
        8, ge=0, le=1000, description="SkyPilot jobs at once (each takes its own machine)."
    )
    sky_image: str | None = Field(
        None,
        description="The image SkyPilot jobs run: docker:<image>@sha256:<digest> (the image "
        "workflow prints it on a release).",
    )
    sky_accelerators: list[str] = Field(
        ["L4", "A10G", "A100"], description="Acceptable GPUs; SkyPilot takes the cheapest offer."
    )
    sky_spot: bool = Field(True, description="Spot instances (preemptible, cheaper).")
    sky_cloud: str | None = Field(None, description="Pin a cloud (aws, gcp, azure, ...).")
    sky_region: str | None = Field(None, description="Pin a region.")
    sky_bucket: str | None = Field(
        None,
        description="The checkpoint bucket; default pax-<ledger id>, unique to this ledger.",
    )
    sky_registry_server: str | None = Field(
        None,
        description="The registry of a private PAX_SKY_IMAGE (e.g. ghcr.io): with the user and "
        "password below, handed to SkyPilot as its docker-login secrets, never as plain env.",
    )
    sky_registry_username: str | None = Field(None, description="The registry's user name.")
    sky_registry_password: str | None = Field(
        None, description="The registry's password or token (a read-only package token)."
    )
    sky_runner_url: str | None = Field(
        None,
        description="A public https URL the jobs post to; unset = no inbound connection "
        "(the jobs' outbox in the bucket is read instead).",
    )
    sky_bucket_path: str | None = Field(
        None,
        description="Where this host reads the checkpoint bucket: a mount of it (gcsfuse, "
        "s3fs), or an fsspec URL (s3://<bucket>, gs://<bucket>). Jobs' outboxes, heartbeats, "
        "results and exits are read from it while they run and when they end: with no "
        "inbound connection (PAX_SKY_RUNNER_URL unset) it is all the service hears of them.",
    )
    sky_poll_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description="How often SkyPilot's job queue (and the bucket) is read: each read is a "
        "request to SkyPilot's API server, so not every scheduler tick.",
    )
    cloud_refill_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How long runs for workers may wait in the queue, not taken by any live "
        "worker, before the warm pool launches again a worker that left idle (up to the number "
        "`pax cloud up` asked for): a preempted worker's requeued runs, or finalists promoted "
        "after the others left, are never stranded.",
    )
    sky_call_timeout_s: float = Field(
        600.0,
        ge=10,
        le=7200,
        description="How long a SkyPilot launch call may stay out (it runs off the scheduler's "
        "tick) before the launch is given up and retried; a job it makes later is cancelled.",
    )
    sky_probe: bool = Field(
        True,
        description="At `pax serve`, check that SkyPilot imports, that a cloud is enabled, and "
        "that the bucket takes a write and a read, before anything is launched.",
    )
    sky_probe_timeout_s: float = Field(
        180.0, gt=0, description="How long the start-up's SkyPilot check may take."
    )
    sky_adapter: str = Field(
        "runner.launch.sky_adapter:SkyAdapter",
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:Class of the one object that calls SkyPilot's API (a test's or a "
        "site's stand-in for the cloud).",
    )
    max_run_hours: float = Field(
        0.0, ge=0, description="Stop a run after this long (0 = no limit)."
    )
    max_run_usd: float = Field(
        0.0, ge=0, description="Stop a run whose attempts cost more (0 = no limit)."
    )
    accelerator: str | None = Field(
        None,
        description="GPU the launched runs use (T4, L4, A10G, "
        "A100, A100-80GB, H100) for cost; unset = CPU, free.",
    )
    spot: bool = Field(False, description="Price runs at spot rates.")
    gpus: int = Field(
        0,
        ge=0,
        le=64,
        description="GPUs the local launcher places trainers on (CUDA_VISIBLE_DEVICES, the "
        "least busy first); 0 = no placement, trainers see whatever the service sees.",
    )
    gpu_slots: int = Field(
        1,
        ge=1,
        le=64,
        description="Trainers at once per GPU (with PAX_GPUS): the local launcher then runs up "
        "to PAX_GPUS x PAX_GPU_SLOTS runs, and each GPU's time is split between the runs on it.",
    )
    mps: bool = Field(
        True,
        description="Start NVIDIA MPS when trainers share a GPU (PAX_GPU_SLOTS > 1): packed "
        "runs' kernels then run side by side instead of time-slicing (runner/launch/mps.py).",
    )
    prices: Path | None = Field(
        None, description="Price table YAML (default: the shipped runner/prices.yaml)."
    )
    price_source: Literal["table", "skypilot"] = Field(
        "table",
        description="skypilot: SkyPilot's catalog first (it needs network), then the table.",
    )

    @field_validator("host")
    @classmethod
    def _safe_host(cls, v: str) -> str:
        if not v:
            raise ValueError("host must not be empty")
        return v

    @property
    def ledger(self) -> str:
        """The ledger's SQLAlchemy URL (or SQLite path)."""
        return self.database_url or str(self.db)

    @property
    def url(self) -> str:
        return self.runner_url or f"http://{self.host}:{self.port}"
