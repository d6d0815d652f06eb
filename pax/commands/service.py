"""`pax serve` and `pax db upgrade`: the service and its ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.console import err, fail

db_app = typer.Typer(help="The ledger's schema (Alembic).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[
        Path | None, typer.Option(help="Ledger file (default $PAX_DB or var/pax.db).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="The ledger as a SQLAlchemy URL \\[env PAX_DATABASE_URL]."),
    ] = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the ledger to the newest schema (data kept)."""
    from runner.ledger.db import current_revision, redacted, upgrade
    from runner.settings import Settings

    given = {k: v for k, v in {"db": db, "database_url": database_url}.items() if v is not None}
    ledger = Settings(**given).ledger
    upgrade(ledger, revision)
    print(json.dumps({"db": redacted(ledger), "revision": current_revision(ledger)}))


def serve(
    db: Annotated[Path | None, typer.Option(help="Ledger file \\[env PAX_DB; var/pax.db].")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="The ledger as a SQLAlchemy URL, e.g. postgresql://user@host/pax; replaces "
            "--db \\[env PAX_DATABASE_URL]."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address \\[env PAX_HOST; 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[env PAX_PORT; 8000].")] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Runs launched at once; 0 = ledger only \\[env PAX_CONCURRENCY; 1]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the service: REST API (/api/v1, docs at /docs), scheduler and local launcher."""
    import uvicorn
    from pydantic import ValidationError

    from runner.settings import Settings
    from trainer.config import describe_errors

    given = {
        k: v
        for k, v in {
            "db": db,
            "database_url": database_url,
            "host": host,
            "port": port,
            "concurrency": concurrency,
        }.items()
        if v is not None
    }
    try:
        settings = Settings(**given)
    except ValidationError as e:
        fail(describe_errors(e.errors(), "settings"))
    from runner.ledger.db import redacted
    from runner.startup import StartupError, open_ledger

    try:  # every reason not to start, in one line, before anything listens
        opened = open_ledger(settings)
        try:
            from pax.app import build_app
            from runner.app import probe_cloud

            app_ = build_app(settings)
            # then the cloud set-up, by calling it (after the checks that need no call)
            said = probe_cloud(settings, opened.engine)
        finally:
            opened.close()
    except (StartupError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    if said:
        err.print("pax serve: SkyPilot: " + "; ".join(said))
    err.print(
        f"pax serve: ledger {redacted(settings.ledger)}, http://{settings.host}:{settings.port} "
        f"(API /api/v1, docs /docs), concurrency {settings.concurrency}"
    )
    from runner.api.http11 import protocol_for

    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        # uvicorn's httptools protocol with bounded heads and deadlines (runner/api/http11.py)
        http=protocol_for(settings),
        timeout_keep_alive=settings.http_keep_alive_s,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("serve")(serve)
