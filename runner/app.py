"""The service: `create_app(settings, extra_routers)`. The CLI adds the dashboard's routers one
floor up, so the service never imports the web package.

Everything with state is built here, once, at start-up, and held by the app: the engine, the
tokens, the pricing, the ingest writer, the kill rule and the scheduler. Nothing of it lives in a
module global, so two apps in one process (tests) never share any of it.

Every request passes, outermost first: the security headers, the Host allow-list (DNS
rebinding), and the gate (body size, then who is calling, before any body is read). Below all
of it, `pax serve` runs uvicorn with runner/api/http11.py: bounded request heads, deadlines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from runner.api import docs, errors
from runner.api.allow import AllowHeader
from runner.api.guard import Guard
from runner.api.headers import SecurityHeaders
from runner.api.routes import cloud, health, results, runs, sky, sweeps, workers
from runner.api.schemas import ErrorBody
from runner.cost import Pricing
from runner.ledger.db import ledger_id
from runner.ledger.ingest import GroupWriter
from runner.settings import Settings
from runner.startup import open_ledger
from runner.study import sweeps as study_sweeps
from runner.study.decisions import write_decisions
from runner.study.killrule import KillRule

API_PREFIX = "/api/v1"
# every refusal has the same body; documented once for all routes of the API
REFUSALS = {
    code: {"model": ErrorBody, "description": why}
    for code, why in (
        (400, "malformed request"),
        (401, "missing or malformed token"),
        (403, "this token may not do this"),
        (404, "no such run or sweep"),
        (409, "the ledger's state forbids it now"),
        (413, "body too large"),
        (422, "invalid input: `detail` names each field"),
    )
}


def allowed_hosts(settings: Settings) -> list[str]:
    """Host headers the service answers: PAX_ALLOWED_HOSTS, else its own names; and always the
    hosts of the URLs it hands out (trainers behind a proxy or a tunnel post to those)."""
    from urllib.parse import urlparse

    hosts = set(settings.allowed_hosts or {settings.host, "localhost", "127.0.0.1", "::1", "[::1]"})
    for url in (settings.runner_url, settings.sky_runner_url, settings.docker_runner_url):
        if url and urlparse(url).hostname:
            hosts.add(urlparse(url).hostname)
    return sorted(hosts)


def create_app(
    settings: Settings | None = None,
    extra_routers: Sequence[APIRouter] = (),
    launcher=None,
    start_scheduler: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    pricing = Pricing.from_settings(settings)  # an unknown GPU or a bad table fails here
    if settings.sky or settings.launcher == "skypilot":
        check_sky(settings, pricing)  # and so does a cloud set-up whose jobs could not finish
    if settings.trainer_user:
        from runner.launch.local import trainer_account

        trainer_account(settings.trainer_user)  # a user trainers can't run as stops the start
    if settings.launcher == "docker":
        docker_options(settings)  # so does a container its trainers couldn't post from

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from runner.launch.scheduler import Scheduler

        opened = open_ledger(settings)  # raises StartupError: `pax serve` checks first
        engine = opened.engine
        app.state.engine = engine
        app.state.ledger_id = ledger_id(engine)  # fixed for the ledger's life: read once
        app.state.admin_token = opened.admin_token
        app.state.worker_token = opened.worker_token
        app.state.pricing = pricing
        app.state.ingest = GroupWriter(engine)
        app.state.kill_rule = KillRule(on_verdict=write_decisions)
        sched = None
        if start_scheduler:
            launchers = (
                [launcher] if launcher is not None else make_launchers(settings, pricing, engine)
            )
            sched = Scheduler(
                engine,
                settings,
                launchers,
                pricing,
                on_tick=lambda: study_sweeps.advance(engine, pricing),
                on_points=app.state.kill_rule.answer,  # points read from run folders too
                capacity={lr.name: launcher_capacity(settings, lr) for lr in launchers},
            )
            sched.start()
        app.state.launch_kinds = launch_kinds(settings)
        app.state.sky_launcher = (
            next((lr for lr in sched.launchers.values() if lr.name == "skypilot"), None)
            if sched
            else None
        )
        app.state.scheduler = sched
        # NVIDIA MPS for packed runs (the local launcher's), for /healthz and the exit
        mine = sched.launchers.values() if sched else []
        app.state.mps = next((lr.mps for lr in mine if getattr(lr, "mps", None)), None)
        app.state.cloud_pool = cloud_pool(settings, app.state.sky_launcher, engine, opened, sched)
        yield
        if app.state.cloud_pool is not None:
            app.state.cloud_pool.shutdown()
        if sched:
            sched.shutdown()
        if app.state.mps is not None:
            app.state.mps.stop()
        app.state.ingest.close()
        opened.close()

    app = FastAPI(
        title="pax runner",
        version="1",
        lifespan=lifespan,
        description="Ledger, queue and launcher for parameter-allocation experiments.",
        docs_url=None,  # served locally by runner.api.docs, when enabled
        redoc_url=None,
    )
    app.state.settings = settings
    errors.install(app)
    api = APIRouter(prefix=API_PREFIX, responses=REFUSALS)
    for r in (
        runs.router,
        sweeps.router,
        workers.router,
        results.router,
        sky.router,
        cloud.router,
        health.router,
    ):
        api.include_router(r)
    app.include_router(api)
    app.include_router(health.router)  # /healthz at the root too, for load balancers
    docs.priced_gpus(app, pricing)
    if settings.docs:
        app.include_router(docs.router)
    for r in extra_routers:
        app.include_router(r)
    # outermost last: security headers on every answer, the Host allow-list's 400 included
    app.add_middleware(AllowHeader)
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    app.add_middleware(SecurityHeaders)
    logging.getLogger("pax").setLevel(logging.INFO)
    return app


def cloud_pool(settings: Settings, sky_launcher, engine, opened, sched):
    """Warm workers on SkyPilot (runner/launch/sky_workers.py), beside the SkyPilot launcher;
    its thread steps only where this service leads the scheduler."""
    if sky_launcher is None:
        return None
    from runner.launch.sky_workers import CloudPool

    pool = CloudPool(
        engine,
        settings,
        sky_launcher.opts,
        sky_launcher.adapter,
        sky_launcher.pricing,
        opened.worker_token,
        login=sky_launcher.login,
        call_timeout_s=settings.sky_call_timeout_s,
        leading=lambda: sched.leading,
    )
    pool.start()
    return pool


def launch_kinds(settings: Settings) -> set[str]:
    """The `launcher` values a run may ask this service for."""
    kinds = {"local", "worker", settings.launcher}
    if settings.sky or settings.launcher == "skypilot":
        kinds.add("skypilot")
    return kinds


def check_sky(settings: Settings, pricing: Pricing) -> None:
    """Refuse, at start-up, SkyPilot options whose jobs could not finish a run: an unpinned or
    missing image, a GPU without a price, a runner URL the cloud cannot reach, or no way at all
    to hear from the jobs."""
    from runner.launch.skypilot import (
        REACHING_THE_SERVICE,
        SkyOptions,
        registry_login,
        validate_options,
    )

    validate_options(SkyOptions.from_settings(settings, bucket="pax-ledger"), pricing)
    registry_login(settings)  # all three, or none
    if not settings.sky_runner_url and not settings.sky_bucket_path:
        raise ValueError(
            "PAX_SKY_RUNNER_URL and PAX_SKY_BUCKET_PATH are both unset, so the service would "
            "hear nothing from its cloud jobs: " + REACHING_THE_SERVICE
        )


def probe_cloud(settings: Settings, engine) -> list[str]:
    """SkyPilot's set-up checked by calling it (runner/launch/sky_probe.py), at `pax serve`
    before anything listens: the lines to show, or StartupError with the fix. [] when the
    service does not launch on SkyPilot, or PAX_SKY_PROBE=false."""
    if not (settings.sky or settings.launcher == "skypilot") or not settings.sky_probe:
        return []
    from runner.launch.sky_adapter import load_adapter
    from runner.launch.sky_probe import ProbeError, probe
    from runner.launch.skypilot import bucket_for
    from runner.startup import StartupError

    ledger = ledger_id(engine)
    try:
        said = probe(
            load_adapter(settings.sky_adapter),
            bucket=bucket_for(settings, ledger),
            bucket_path=settings.sky_bucket_path,
            timeout_s=settings.sky_probe_timeout_s,
        )
    except ProbeError as e:
        raise StartupError(f"{e} (PAX_SKY_PROBE=false skips this check)") from None
    return [f"ledger {ledger}", *said]


def docker_options(settings: Settings):
    """The docker launcher's options; ValueError (a refusal at start-up) when its trainers could
    not reach this service."""
    from runner.launch.docker import DockerOptions, trainer_url

    opts = DockerOptions(
        image=settings.docker_image,
        engine=settings.docker_engine,
        gpus=settings.docker_gpus or None,
        data_dir=settings.docker_data_dir,
        network=settings.docker_network,
        runner_url=settings.docker_runner_url,
    )
    trainer_url(settings.url, opts)
    return opts


def launcher_capacity(settings: Settings, launcher) -> int:
    """Runs at once: SkyPilot by PAX_SKY_CONCURRENCY; a launcher that places trainers on GPUs
    by its slots (PAX_GPUS x PAX_GPU_SLOTS); else PAX_CONCURRENCY (0 keeps a pure ledger host)."""
    if launcher.name == "skypilot":
        return settings.sky_concurrency
    if settings.concurrency == 0:
        return 0
    return launcher.capacity or settings.concurrency


def make_launchers(settings: Settings, pricing: Pricing, engine) -> list:
    """The default launcher (docker falls back to local processes when no engine answers),
    and SkyPilot beside it when asked for."""
    from runner.launch.local import LocalLauncher
    from runner.ledger.attempts import Placement

    place = Placement(accelerator=settings.accelerator, spot=settings.spot)
    out = []
    if settings.launcher == "docker":
        from runner.launch.docker import DockerLauncher, engine_available

        if engine_available(settings.docker_engine):
            out.append(DockerLauncher(docker_options(settings), place))
        else:
            logging.getLogger("pax").warning(
                "launcher=docker but no engine answers `%s info`: using local processes",
                settings.docker_engine,
            )
    if settings.launcher != "skypilot" and not out:
        from runner.launch.mps import for_packed_runs

        mps = for_packed_runs(
            settings.runs_root / "mps",
            gpus=settings.gpus,
            slots=settings.gpus * settings.gpu_slots,
            enabled=settings.mps,
            other_user=bool(settings.trainer_user),
        )
        mps.start()
        out.append(
            LocalLauncher(
                passthrough=settings.trainer_env,
                place=place,
                gpus=settings.gpus,
                slots_per_gpu=settings.gpu_slots,
                user=settings.trainer_user,
                mps=mps,
            )
        )
    if settings.sky or settings.launcher == "skypilot":
        from runner.launch.sky_adapter import load_adapter
        from runner.launch.skypilot import (
            SkyOptions,
            SkyPilotLauncher,
            bucket_for,
            registry_login,
        )

        out.append(
            SkyPilotLauncher(
                SkyOptions.from_settings(settings, bucket_for(settings, ledger_id(engine))),
                adapter=load_adapter(settings.sky_adapter),
                pricing=pricing,
                takes_unassigned=settings.launcher == "skypilot",
                bucket_path=settings.sky_bucket_path,
                login=registry_login(settings),
                poll_s=settings.sky_poll_s,
                call_timeout_s=settings.sky_call_timeout_s,
            )
        )
    return out
