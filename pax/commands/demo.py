"""`pax demo` (`make demo`): the main job, end to end, on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import resolve_config
from pax.console import fail


def demo_cmd(
    plan: Annotated[Path, typer.Option(help="The plan to run.")] = Path("configs/plan_smoke.yaml"),
    concurrency: Annotated[int, typer.Option(help="Runs at once.")] = 2,
    port: Annotated[int, typer.Option(help="Port of the demo's service.")] = 8123,
    timeout_min: Annotated[float, typer.Option(help="Give up after this long.")] = 30.0,
) -> None:
    """The main job: data, tokenizers, the service, a whole plan (ranking, kills, promotion,
    finalists), then the report and plots; prints where everything is."""
    from pax.demo import run_demo

    try:
        summary = run_demo(
            resolve_config(plan), concurrency=concurrency, port=port, timeout_s=60 * timeout_min
        )
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        fail(str(e), 1)
    print(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
