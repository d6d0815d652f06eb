"""The service: `create_app(settings, extra_routers)`. The CLI adds the dashboard's routers one
floor up, so the service never imports the web package.

Everything with state is built here, once, at start-up, and held by the app: the engine, the
admin token, the pricing, the ingest writer, the kill rule and the scheduler. Nothing of it lives
in a module global, so two apps in one process (tests) never share any of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from runner.api import errors
from runner.api.routes import health, results, runs, sweeps, workers
from runner.auth import load_or_create_admin_token
from runner.launch.cost import Pricing
from runner.ledger.db import make_engine, upgrade
from runner.ledger.ingest import GroupWriter
from runner.settings import Settings
from runner.study import sweeps as study_sweeps
from runner.study.decisions import write_decisions
from runner.study.killrule import KillRule

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    extra_routers: Sequence[APIRouter] = (),
    launcher=None,
    start_scheduler: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    pricing = Pricing.from_settings(settings)  # an unknown GPU or a bad table fails here

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from runner.launch.scheduler import Scheduler

        upgrade(settings.db)  # once, before listening
        engine = make_engine(settings.db)
        app.state.engine = engine
        app.state.admin_token = load_or_create_admin_token(settings.db, settings.admin_token)
        app.state.pricing = pricing
        app.state.ingest = GroupWriter(engine)
        app.state.kill_rule = KillRule(on_verdict=write_decisions)
        sched = None
        if start_scheduler:
            sched = Scheduler(
                engine,
                settings,
                launcher or make_launcher(settings),
                pricing,
                on_tick=lambda: study_sweeps.advance(engine, pricing),
            )
            sched.start()
        app.state.scheduler = sched
        yield
        if sched:
            sched.shutdown()
        app.state.ingest.close()
        engine.dispose()

    app = FastAPI(
        title="pax runner",
        version="1",
        lifespan=lifespan,
        description="Ledger, queue and launcher for parameter-allocation experiments.",
    )
    app.state.settings = settings
    errors.install(app)
    api = APIRouter(prefix=API_PREFIX)
    for r in (runs.router, sweeps.router, workers.router, results.router, health.router):
        api.include_router(r)
    app.include_router(api)
    app.include_router(health.router)  # /healthz at the root too, for load balancers
    for r in extra_routers:
        app.include_router(r)
    logging.getLogger("pax").setLevel(logging.INFO)
    return app


def make_launcher(settings: Settings):
    """The configured launcher; docker falls back to local processes when no engine answers."""
    from runner.launch.local import LocalLauncher

    if settings.launcher == "docker":
        from runner.launch.docker import DockerLauncher, DockerOptions, engine_available

        if engine_available():
            return DockerLauncher(DockerOptions(image=settings.docker_image))
        logging.getLogger("pax").warning(
            "launcher=docker but no Docker engine answers `docker info`: using local processes"
        )
    elif settings.launcher == "skypilot":
        from runner.launch.skypilot import SkyPilotLauncher

        return SkyPilotLauncher()
    return LocalLauncher()
