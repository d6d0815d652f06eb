"""Dependencies as type aliases: the engine, settings, and who is calling."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine

from runner.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def bearer(request: Request) -> str:
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


def require_admin(request: Request, token: Annotated[str, Depends(bearer)]) -> None:
    if not hmac.compare_digest(token, request.app.state.admin_token):
        raise HTTPException(403, "this route needs the admin token")


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str, Depends(bearer)]
AdminDep = Annotated[None, Depends(require_admin)]


def describe_errors(errors: list) -> str:
    """Validation errors as one readable line, each naming its field."""
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
