"""Dependencies as type aliases: the engine, settings, pricing, the ingest writer, the kill rule,
and who is calling. They only read app.state and headers, so they are `async`: FastAPI runs a
plain `def` dependency in its thread pool, a hop per dependency per request on the hot path."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine

from runner.launch.cost import Pricing
from runner.ledger.crud import tokens_equal
from runner.ledger.ingest import GroupWriter
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


async def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            401,
            "missing token: send `Authorization: Bearer <token>` (the admin "
            "token is printed at first start and kept next to the database)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


async def require_admin(request: Request, token: Annotated[str, Depends(bearer)]) -> None:
    if not tokens_equal(token, request.app.state.admin_token):
        raise HTTPException(403, "this route needs the admin token")


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PricingDep = Annotated[Pricing, Depends(get_pricing)]
WriterDep = Annotated[GroupWriter, Depends(get_writer)]
KillRuleDep = Annotated[KillRule, Depends(get_kill_rule)]
TokenDep = Annotated[str, Depends(bearer)]
AdminDep = Annotated[None, Depends(require_admin)]
