"""Dependencies as type aliases: the engine, settings, pricing, the ingest writer, the kill rule,
and who is calling (decided by the gate before the body is read). They only read app.state, so
they are `async`: FastAPI runs a plain `def` dependency in its thread pool, a hop per dependency
per request on the hot path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine

from runner.cost import Pricing
from runner.ledger.ingest import GroupWriter
from runner.ledger.runs import RunRef
from runner.settings import Settings
from runner.study.killrule import KillRule


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_pricing(request: Request) -> Pricing:
    return request.app.state.pricing


async def get_writer(request: Request) -> GroupWriter:
    return request.app.state.ingest


async def get_kill_rule(request: Request) -> KillRule:
    return request.app.state.kill_rule


async def caller(request: Request) -> dict:
    """Who is calling, as the gate (runner/api/guard.py) decided before the body was read: it
    alone checks roles, by route. A route the gate does not see is refused here, never open."""
    found = request.scope.get("state", {}).get("caller")
    if found is None:
        raise HTTPException(401, "missing token: send `Authorization: Bearer <token>`")
    return found


async def run_caller(request: Request):
    """A run's trainer-facing routes: the run (RunRef), posted to with its own token or the
    admin's."""
    return (await caller(request))["run"]


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PricingDep = Annotated[Pricing, Depends(get_pricing)]
WriterDep = Annotated[GroupWriter, Depends(get_writer)]
KillRuleDep = Annotated[KillRule, Depends(get_kill_rule)]
# the gate decided the role by route: the admin's for user routes, the worker's for /claim
GuardedDep = Annotated[dict, Depends(caller)]
RunCallerDep = Annotated[RunRef, Depends(run_caller)]


def check_data(request: Request, cfgs, launcher: str | None) -> None:
    """Runs a local launcher would start must find their tokenized data here: a 422 naming the
    missing path and the command that makes it, instead of a run that fails seconds after its
    launch. Cloud, docker and worker launches prepare or mount their own data."""
    if (launcher or request.app.state.settings.launcher) != "local":
        return
    seen = set()
    for cfg in cfgs:
        path = cfg.tokenized_path()
        if path in seen:
            continue
        seen.add(path)
        if (missing := cfg.missing_data()) is not None:
            raise HTTPException(422, missing)


def check_launchable(request: Request, launcher: str | None) -> None:
    """A run or plan may ask only for a launcher this service has."""
    kinds = request.app.state.launch_kinds
    if launcher is not None and launcher not in kinds:
        raise HTTPException(
            422,
            f"launcher: this service launches {sorted(kinds)}; for skypilot start it with "
            "PAX_SKY=true (pip install .[cloud], PAX_SKY_IMAGE set; docs/deploy.md)",
        )
