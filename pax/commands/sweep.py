"""`pax sweep submit|status|resume` (over the service's API) and `pax aggregate` (run folders)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import TokenOpt, UrlOpt, admin_token, resolve_config
from pax.console import err, fail

sweep_app = typer.Typer(help="Plans and sweeps on a running service.", no_args_is_help=True)


@sweep_app.command("submit")
def sweep_submit(
    file: Annotated[
        Path,
        typer.Argument(
            help="Plan YAML (configs/plan_10m.yaml) or a study "
            "sweep file (configs/embed_ratio.yaml)."
        ),
    ],
    url: UrlOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
    launcher: Annotated[
        str | None,
        typer.Option(
            help="Where its runs train: local, docker, skypilot or worker (default: the plan's "
            "`launcher:`, else the service's own)."
        ),
    ] = None,
) -> None:
    """Submit a plan: its cells are queued at once; promotion follows by itself."""
    from pax.client import Client, ServiceError

    file = resolve_config(file)
    if not file.is_file():
        fail(f"{file} not found")
    with Client(url, admin_token(token)) as c:
        try:
            print(json.dumps(c.submit_plan(file.read_bytes(), launcher=launcher)))
        except ServiceError as e:
            fail(str(e))


@sweep_app.command("status")
def sweep_status(sweep_id: int, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """A sweep's phase, run counts and decisions."""
    from pax.client import Client, ServiceError

    with Client(url) as c:
        try:
            print(json.dumps(c.sweep(sweep_id), indent=2))
        except ServiceError as e:
            fail(str(e))


@sweep_app.command("resume")
def sweep_resume(
    sweep_id: int, url: UrlOpt = "http://127.0.0.1:8000", token: TokenOpt = None
) -> None:
    """Launch a paused sweep's runs again, once the cause it was paused for is fixed (its
    `paused_reason`: SkyPilot missing, no cloud access, a bad credential)."""
    from pax.client import Client, ServiceError

    with Client(url, admin_token(token)) as c:
        try:
            sw = c.resume_sweep(sweep_id)
        except ServiceError as e:
            fail(str(e))
    err.print(f"sweep {sweep_id} resumed: its queued runs launch again")
    print(json.dumps(sw))


def aggregate_cmd(
    log_dir: Annotated[
        Path, typer.Option("--log_dir", "--log-dir", help="Run directories.")
    ] = Path("logs"),
    output: Annotated[Path, typer.Option("--output")] = Path("results_summary.csv"),
    report_dir: Annotated[
        Path, typer.Option("--report-dir", "--report_dir", help="Tables and plots.")
    ] = Path("reports/aggregate"),
) -> None:
    """One row per run directory (the same columns as GET /api/v1/results.csv), plus the
    early-results, ranking and finalists tables and the plots."""
    from runner.study.report import aggregate_logs

    try:
        files = aggregate_logs(log_dir, output, report_dir)
    except FileNotFoundError as e:
        fail(str(e))
    err.print(
        f"wrote {files['results']} and {len(files.get('plots', []))} plot files in "
        f"{report_dir}/plots"
    )
    print(json.dumps(files))


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")
    app.command("aggregate")(aggregate_cmd)
