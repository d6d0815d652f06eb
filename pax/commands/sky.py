"""`pax sky launch`: runs or a whole sweep on SkyPilot, through the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import ExpOpt, TokenOpt, UrlOpt, admin_token, resolve_config
from pax.console import err, fail

sky_app = typer.Typer(
    help="Cloud spot runs through SkyPilot (pip install .[cloud]).", no_args_is_help=True
)


@sky_app.command("launch")
def sky_launch(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            help="A train config YAML, a study sweep file, or a plan (its ranking cells).",
        ),
    ],
    exp: ExpOpt = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the forecast and the exact task; launch nothing."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Launch without asking.")] = False,
) -> None:
    """Run one experiment or a whole sweep on SkyPilot managed jobs, through the service (its
    SkyPilot options, budget caps and charges): prints the forecast and asks first."""
    from pax.client import Client
    from pax.sky_cli import sky_launch as launch

    try:
        with Client(url, admin_token(token)) as client:
            out = launch(
                resolve_config(config),
                exp=exp,
                client=client,
                dry_run=dry_run,
                confirm=(lambda m: True) if yes else (lambda m: typer.confirm(m, default=False)),
                log=err.print,
            )
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # ServiceError included
        fail(str(e))
    if dry_run:
        print(out.pop("task_yaml"))
    print(json.dumps(out))


def register(app: typer.Typer) -> None:
    app.add_typer(sky_app, name="sky")
