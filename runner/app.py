"""The service: `create_app(settings, extra_routers)`. The CLI adds the dashboard's routers one
floor up, so the service never imports the web package."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from runner import cost, killrule
from runner.api.deps import describe_errors
from runner.api.routes import health, runs, sweeps, workers
from runner.auth import load_or_create_admin_token
from runner.db import make_engine, upgrade
from runner.settings import Settings

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    extra_routers: Sequence[APIRouter] = (),
    launcher=None,
    start_scheduler: bool = True,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from runner.scheduler import Scheduler

        upgrade(settings.db)  # once, before listening
        app.state.engine = make_engine(settings.db)
        app.state.admin_token = load_or_create_admin_token(settings.db, settings.admin_token)
        app.state.kill_rule = killrule.check
        cost.configure(
            settings.accelerator,
            settings.spot,
            str(settings.prices) if settings.prices else None,
            settings.price_source,
        )
        sched = None
        if start_scheduler:
            sched = Scheduler(app.state.engine, settings, launcher or make_launcher(settings))
            sched.start()
        app.state.scheduler = sched
        yield
        if sched:
            sched.shutdown()
        app.state.engine.dispose()

    app = FastAPI(
        title="pax runner",
        version="1",
        lifespan=lifespan,
        description="Ledger, queue and launcher for parameter-allocation experiments.",
    )
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # one readable sentence per problem, naming the field
        return JSONResponse(
            {"detail": describe_errors(exc.errors()), "errors": jsonable(exc.errors())},
            status_code=422,
        )

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(runs.router)
    api.include_router(sweeps.router)
    api.include_router(workers.router)
    api.include_router(health.router)
    app.include_router(api)
    app.include_router(health.router)  # /healthz at the root too, for load balancers
    for r in extra_routers:
        app.include_router(r)
    logging.getLogger("pax").setLevel(logging.INFO)
    return app


def make_launcher(settings: Settings):
    """The configured launcher; docker falls back to local processes when no engine answers."""
    from runner.launchers.local import LocalLauncher

    if settings.launcher == "docker":
        from runner.launchers.docker import DockerLauncher, DockerOptions, engine_available

        if engine_available():
            return DockerLauncher(DockerOptions(image=settings.docker_image))
        logging.getLogger("pax").warning(
            "launcher=docker but no Docker engine answers `docker info`: using local processes"
        )
    elif settings.launcher == "skypilot":
        from runner.launchers.skypilot import SkyPilotLauncher

        return SkyPilotLauncher()
    return LocalLauncher()


def jsonable(errors: list) -> list:
    """Validation errors without their inputs: an input may be huge, or NaN (not JSON)."""
    return [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]
