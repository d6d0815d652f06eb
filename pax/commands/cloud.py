"""`pax cloud up/down/status`: warm GPU workers on SkyPilot, through the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import TokenOpt, UrlOpt, admin_token
from pax.console import err, fail

cloud_app = typer.Typer(
    help="Warm spot GPU workers on SkyPilot that pack a study's runs (pip install 'pax[cloud]').",
    no_args_is_help=True,
)


def _call(url: str, token: str | None, what):
    from pax.client import Client

    try:
        with Client(url, admin_token(token)) as client:
            return what(client)
    except (ValueError, RuntimeError) as e:  # ServiceError, Unreachable included
        fail(str(e))


@cloud_app.command("up")
def up(
    gpu: Annotated[str, typer.Option("--gpu", help="The GPU each worker gets (H100, L4...).")],
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
    slots: Annotated[
        int, typer.Option("--slots", min=1, max=64, help="Runs trained at once per GPU.")
    ] = 4,
    idle_exit_s: Annotated[
        int,
        typer.Option(
            "--idle-exit-s",
            min=0,
            max=86_400,
            help="A worker leaves (its VM torn down) after the queue had nothing for it this "
            "long; 0 = never.",
        ),
    ] = 600,
    url: UrlOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
) -> None:
    """Start warm workers; they train the runs submitted with `launcher: worker`
    (`pax sweep submit --launcher worker PLAN`)."""
    body = {"gpu": gpu, "workers": workers, "slots": slots, "idle_exit_s": idle_exit_s}
    out = _call(url, token, lambda c: c.cloud_up(body))
    err.print(
        f"asked for {len(out['workers'])} x {gpu} with {slots} slots each (bucket "
        f"{out['bucket']}); `pax cloud status` follows them"
    )
    print(json.dumps(out))


@cloud_app.command("forecast")
def forecast(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A plan.")],
    gpu: Annotated[str, typer.Option("--gpu", help="The GPU each worker gets.")] = "H100",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 2,
    slots: Annotated[int, typer.Option("--slots", min=1, max=64)] = 4,
    idle_exit_s: Annotated[int, typer.Option("--idle-exit-s", min=0, max=86_400)] = 600,
    on_demand: Annotated[bool, typer.Option("--on-demand", help="Price on-demand VMs.")] = False,
    url: UrlOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole answer as JSON.")] = False,
) -> None:
    """What a plan costs and how long it takes on WORKERS x SLOTS of GPU, against one job
    per run: an upper bound (every run trains its whole budget)."""
    params = {"gpu": gpu, "workers": workers, "slots": slots, "idle_exit_s": idle_exit_s}
    params["spot"] = str(not on_demand).lower()
    f = _call(url, token, lambda c: c.cloud_forecast(config.read_bytes(), **params))
    if as_json:
        print(json.dumps(f))
        return
    for line in forecast_lines(f):
        print(line)


def forecast_lines(f: dict) -> list[str]:
    kind = "spot" if f["spot"] else "on-demand"
    out = [
        f"{f['plan']}: {f['workers']} x {f['accelerator']} {kind} with {f['slots']} slots "
        f"(${f['price_per_hour']:.2f}/h, {f['tokens_per_s']:,.0f} tokens/s per run alone, "
        f"{f['packing_speedup']:.2f}x packed)"
    ]

    def row(name, x):
        return (
            f"  {name:<22} ${x['usd']:>8.2f}  {x['gpu_hours']:>6.2f} GPU-h  "
            f"{x['wall_s'] / 3600:>6.2f} h to the report  (controller ${x['controller_usd']:.2f})"
        )

    for k in ("low", "high"):
        out.append(row(f"workers, {k}", f["workers_forecast"][k]))
    for k in ("low", "high"):
        out.append(row(f"one job per run, {k}", f["one_job_per_run"][k]))
    if f["budget_usd"]:
        out.append(f"  budget ${f['budget_usd']:.2f}")
    out.append(f"  upper bound: {f['upper_bound']}")
    return out


@cloud_app.command("down")
def down(url: UrlOpt = "http://127.0.0.1:8000", token: TokenOpt = None) -> None:
    """Cancel every live worker: its trainers checkpoint and their runs are requeued."""
    print(json.dumps(_call(url, token, lambda c: c.cloud_down())))


@cloud_app.command("status")
def status(
    url: UrlOpt = "http://127.0.0.1:8000",
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole answer as JSON.")] = False,
) -> None:
    """The ledger id and bucket, each worker's state and reason, and the bill: VM time at the
    catalog price = the runs in its slots + idle, plus SkyPilot's jobs controller."""
    s = _call(url, token, lambda c: c.cloud_status())
    if as_json:
        print(json.dumps(s))
        return
    print(f"ledger {s['ledger_id']}  bucket {s['bucket']}  runner {s['runner_url']}")
    for w in s["workers"]:
        print(
            f"{w['name']:>8}  {w['status']:<10} {w['accelerator']}{' spot' if w['spot'] else ''}"
            f" x{w['slots']}  job {w['backend_id'] or '-'}  VM {w['vm_seconds'] / 60:.1f} min"
            f"  ${w['vm_usd']:.2f} (runs ${w['runs_usd']:.2f}, idle ${w['idle_usd']:.2f})"
            + (f"  {w['reason']}" if w["reason"] else "")
            + (
                f"; replaced by {by}"
                if (by := w.get("replaced_by")) and by not in (w["reason"] or "")
                else ""
            )
        )
    c = s["controller"]
    print(
        f"controller ${c['usd']:.2f} ({c['seconds'] / 60:.1f} min at ${c['usd_per_h']:.3f}/h)"
        f"  total ${s['total_usd']:.2f}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(cloud_app, name="cloud")
