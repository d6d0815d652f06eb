"""Options and helpers every command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pax.console import fail

Mirror = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        help="Folder or http(s) URL to take files from instead of the official source "
        "(default: $PAX_DATA_MIRROR).",
    ),
]


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML with base: and experiments:.")
]
ExpOpt = Annotated[str | None, typer.Option("--exp", help="Experiment name in the YAML.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override, e.g. optim.lr=1e-3 (repeatable).")
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option("--run-dir", "--run_dir", help="Run directory (default logs/<exp>/<run-id>/)."),
]
LogsOpt = Annotated[Path, typer.Option("--logs", "--log_dir", help="Root of run directories.")]


def resolve_config(path: Path | None) -> Path | None:
    """A config path as given, or, for configs/<file> where there is no such file (an
    installed pax, run from any folder), the copy shipped in the package."""
    if path is None or Path(path).exists() or Path(path).parts[:1] != ("configs",):
        return path
    from importlib import resources

    shipped = resources.files("pax") / "configs" / Path(*Path(path).parts[1:])
    return Path(str(shipped)) if shipped.is_file() else path


def load_config(config, exp, overrides):
    from trainer.config import ConfigError, load_config

    try:
        return load_config(resolve_config(config), exp, overrides or [])
    except ConfigError as e:
        fail(str(e))


UrlOpt = Annotated[str, typer.Option("--url", envvar="PAX_URL", help="The service.")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PAX_ADMIN_TOKEN",
        help="Admin token (default: PAX_ADMIN_TOKEN, or the token file next to --db).",
    ),
]


def admin_token(token: str | None) -> str:
    """The admin token (given, PAX_ADMIN_TOKEN, or the file beside the ledger), or fail."""
    from pax.client import admin_token as find

    found = find(token)
    if not found:
        fail(
            "no admin token: pass --token, set PAX_ADMIN_TOKEN, or run where the ledger's "
            "<db>.admin_token is (PAX_DB)"
        )
    return found
