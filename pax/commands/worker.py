"""`pax worker`: pull queued runs from a service and train them here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pax.console import err, fail


def worker_cmd(
    runner_url: Annotated[
        str,
        typer.Option(
            "--runner-url", envvar="PAX_RUNNER_URL", help="The service to pull runs from."
        ),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the service's worker token (the service writes it beside its "
            "ledger as <db>.worker_token); default: $PAX_WORKER_TOKEN.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(envvar="PAX_WORKER_NAME", help="Worker name (default host-pid).")
    ] = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", envvar="PAX_WORKER_RUNS_ROOT")] = Path(
        "var/worker-runs"
    ),
    poll_s: Annotated[float, typer.Option("--poll-s", envvar="PAX_WORKER_POLL_S")] = 5.0,
    max_runs: Annotated[int, typer.Option("--max-runs", help="Stop after N runs (0 = never).")] = 0,
    idle_exit_s: Annotated[
        float,
        typer.Option(
            "--idle-exit-s",
            envvar="PAX_WORKER_IDLE_EXIT_S",
            help="Stop after the queue stayed empty this long (0 = never).",
        ),
    ] = 0,
    slots: Annotated[
        int,
        typer.Option(
            "--slots",
            min=1,
            max=64,
            help="Runs trained at once here (one GPU each while they "
            "go round, else shared) \\[env PAX_WORKER_SLOTS].",
            envvar="PAX_WORKER_SLOTS",
        ),
    ] = 1,
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus",
            min=0,
            max=64,
            envvar="PAX_WORKER_GPUS",
            help="GPUs the slots share out (default: those `nvidia-smi -L` lists).",
        ),
    ] = None,
    mps: Annotated[
        bool,
        typer.Option(
            "--mps/--no-mps",
            envvar="PAX_MPS",
            help="Start NVIDIA MPS when slots share a GPU (runner/launch/mps.py).",
        ),
    ] = True,
    checkpoint_url: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-url",
            envvar="PAX_CHECKPOINT_URL",
            help="Where checkpoints are kept for any worker to resume from: a folder, or "
            "s3://, gs:// (fsspec).",
        ),
    ] = None,
    accelerator: Annotated[
        str | None,
        typer.Option(
            envvar="PAX_ACCELERATOR", help="This machine's GPU, for cost (T4, L4, A100, H100...)."
        ),
    ] = None,
    spot: Annotated[bool, typer.Option(envvar="PAX_SPOT", help="A spot machine.")] = False,
    alive_file: Annotated[
        Path | None,
        typer.Option(
            "--alive-file",
            envvar="PAX_WORKER_ALIVE_FILE",
            help="Touched at start, at each answer from the service and while trainers run: "
            "a container's healthcheck reads its age.",
        ),
    ] = None,
) -> None:
    """Pull queued runs from a service and train them here (GPU if present). The worker token
    comes from the environment or a file, never the command line (ps shows command lines)."""
    import os

    from pax.worker import run_worker
    from runner.auth import TokenError, read_token_file

    token = os.environ.get("PAX_WORKER_TOKEN")
    if token_file is not None:
        if not token_file.is_file():
            fail(f"--token-file {token_file} not found: copy <db>.worker_token from the service")
        try:
            token = read_token_file(token_file)
        except TokenError as e:
            fail(str(e))
    if not token:
        fail(
            "no worker token: set PAX_WORKER_TOKEN or pass --token-file (the service keeps it "
            "in <db>.worker_token, or takes it from its own PAX_WORKER_TOKEN)"
        )
    raise typer.Exit(
        run_worker(
            runner_url,
            token,
            name=name,
            runs_root=runs_root,
            poll_s=poll_s,
            max_runs=max_runs,
            idle_exit_s=idle_exit_s,
            slots=slots,
            mps=mps,
            gpus=gpus,
            checkpoint_url=checkpoint_url,
            accelerator=accelerator,
            spot=spot,
            alive_file=alive_file,
            log=err.print,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
