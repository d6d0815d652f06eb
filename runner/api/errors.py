"""One translation from the ledger's and the trainer's refusals to HTTP: NotFound -> 404,
Conflict -> 409, an unusable config or plan -> 422, a token that may not do this -> 403; and
validation errors as one readable sentence per problem, naming the field."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from runner.api.headers import HEADERS
from runner.ledger.errors import Conflict, NotFound
from trainer.config import ConfigError, describe_errors


def jsonable(errors: list) -> list:
    """Validation errors without their inputs: an input may be huge, or NaN (not JSON)."""
    return [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors]


def install(app: FastAPI) -> None:
    def answer(status: int):
        async def handler(request: Request, exc: Exception):
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    app.add_exception_handler(NotFound, answer(404))
    app.add_exception_handler(Conflict, answer(409))
    app.add_exception_handler(ConfigError, answer(422))

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception):
        # answered by Starlette's outermost layer, past every middleware: the security
        # headers are added here, and the error's text stays in the log, never in the answer
        return JSONResponse(
            {"detail": "internal error: the service logged it; please report it"},
            status_code=500,
            headers={k.decode(): v.decode() for k, v in HEADERS},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        return JSONResponse(
            {"detail": describe_errors(errors, "body"), "errors": jsonable(errors)},
            status_code=422,
        )
