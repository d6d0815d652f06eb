"""`pax`: the command line, and the composition root that wires the floors together."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pax import release_cli
from pax.console import err, fail

app = typer.Typer(
    help="pax: parameter-allocation experiments for small language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Download the study's data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
Mirror = Annotated[
    str | None,
    typer.Option(
        "--mirror",
        help="Folder or http(s) URL to take files from instead of the official source "
        "(default: $PAX_DATA_MIRROR).",
    ),
]


@data_app.command("wikitext")
def data_wikitext(
    output: Annotated[Path, typer.Option("--output", help="Where train/valid/test.txt go.")] = Path(
        "data/wikitext-2"
    ),
    mirror: Mirror = None,
    variant: Annotated[str, typer.Option(help="v1 (word-level, with <unk>) or raw.")] = "v1",
    revision: Annotated[str, typer.Option(help="Hugging Face hub revision.")] = "main",
    force: Annotated[bool, typer.Option(help="Rewrite even if the output is current.")] = False,
) -> None:
    """Fetch WikiText-2 (Hugging Face hub, or a mirror) and write it with a manifest."""
    from trainer.prep.fetch import FetchError
    from trainer.prep.wikitext import download_wikitext

    try:
        m = download_wikitext(
            output, mirror=mirror, variant=variant, revision=revision, force=force
        )
    except (FetchError, ValueError) as e:
        fail(str(e))
    for split, s in m["splits"].items():
        err.print(
            f"{split:>5}: {s['lines']:>6,} lines {s['words']:>9,} words "
            f"{s['word_level_tokens']:>9,} word-level tokens"
        )
    if m["sample"]:
        err.print(f"[bold yellow]{m['note']}[/]")
    print(json.dumps({"output": str(output), "sample": m["sample"], "layout": m["layout"]}))


@app.command("tokenize")
def tokenize(
    input: Annotated[
        Path, typer.Option("--input", help="Folder written by `pax data wikitext`.")
    ] = Path("data/wikitext-2"),
    vocab_size: Annotated[int, typer.Option("--vocab_size", "--vocab-size")] = 16000,
    output: Annotated[
        Path, typer.Option("--output", help="Root; files go to OUTPUT/sp<V>/.")
    ] = Path("data/lm_tokenized"),
    model_type: Annotated[str, typer.Option("--model_type", "--model-type")] = "bpe",
    reports: Annotated[Path, typer.Option(help="Where length_hist.png goes.")] = Path(
        "reports/data"
    ),
    force: Annotated[bool, typer.Option(help="Retrain even if the cache is current.")] = False,
) -> None:
    """Train a SentencePiece tokenizer and encode every split to uint16 token files."""
    from trainer.prep.tokenizer import build_tokenizer, tokenized_dir

    try:
        m = build_tokenizer(
            input, vocab_size, output, model_type=model_type, reports_dir=reports, force=force
        )
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    for split, s in m["splits"].items():
        err.print(f"{split:>5}: {s['tokens']:>9,} tokens ({s['tokens_per_word']:.3f} per word)")
    if m["sample"]:
        err.print("[bold yellow]SAMPLE[/] data: these token files are not WikiText-2 train.")
    print(
        json.dumps(
            {
                "output": str(tokenized_dir(output, vocab_size)),
                "tokenizer_sha256": m["tokenizer_sha256"],
                "sample": m["sample"],
            }
        )
    )


@app.command("plan")
def plan_cmd(
    total_params: Annotated[
        str, typer.Option("--total-params", "--total_params", help="Budget, e.g. 10M.")
    ] = "10M",
    embedding_ratio: Annotated[
        float, typer.Option("--embedding-ratio", "--embedding_ratio")
    ] = 0.35,
    glu_expansion: Annotated[float, typer.Option("--glu-expansion", "--glu_expansion")] = 2.66,
    vocab_size: Annotated[int, typer.Option("--vocab-size", "--vocab_size")] = 16000,
    tied: Annotated[
        bool, typer.Option("--tied/--untied", help="Tie the LM head to the embedding.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Solve the architecture for a budget split and print its parameter table."""
    from trainer.params import parse_count, plan, print_param_table

    try:
        p = plan(parse_count(total_params), embedding_ratio, glu_expansion, vocab_size, tied)
    except ValueError as e:
        fail(str(e))
    if as_json:
        print(p.to_json())
    else:
        from rich.console import Console

        print_param_table(p, Console())


@app.command("plan-grid")
def plan_grid(
    total_params: Annotated[str, typer.Option("--total-params", "--total_params")] = "10M",
) -> None:
    """Markdown table of the study's grid (docs/planner.md holds its output, checked by a test)."""
    from trainer.params import grid_table, parse_count

    print(grid_table(parse_count(total_params)), end="")


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


def _config(config, exp, overrides):
    from trainer.config import ConfigError, load_config

    try:
        return load_config(resolve_config(config), exp, overrides or [])
    except ConfigError as e:
        fail(str(e))


@app.command("train")
def train_cmd(
    config: ConfigOpt = None,
    exp: ExpOpt = None,
    overrides: SetOpt = None,
    run_dir: RunDirOpt = None,
    logs: LogsOpt = Path("logs"),
    overfit_tokens: Annotated[
        int,
        typer.Option(
            "--overfit_tokens",
            "--overfit-tokens",
            help="Sanity mode: train on the first N tokens only.",
        ),
    ] = 0,
    lr_find_flag: Annotated[
        bool,
        typer.Option("--lr_find", "--lr-find", help="Run the LR range test instead of training."),
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
    lock_wait: Annotated[
        float,
        typer.Option(
            "--lock-wait", help="Seconds to wait for a run directory another process holds."
        ),
    ] = 0.0,
) -> None:
    """Train (and evaluate) one run; rerunning the same command resumes it.

    Exit codes: 0 done, 1 crashed, 2 bad config, 3 killed by rule, 75 preempted."""
    from trainer.config import ConfigError
    from trainer.exits import EXIT_BAD_CONFIG
    from trainer.run_guard import RunLocked
    from trainer.runs import default_run_dir, finished
    from trainer.train import train

    cfg = _config(config, exp, overrides)
    if overfit_tokens:
        cfg = cfg.model_copy(update={"name": f"{cfg.name}-overfit{overfit_tokens}"})
    run_dir = run_dir or default_run_dir(cfg, logs)
    if lr_find_flag:
        return _lr_find(cfg, run_dir)
    done = finished(run_dir)
    if done and done["run"]["spec_hash"] == cfg.spec_hash():
        err.print(f"{run_dir}: already {done['run']['status']}; nothing to do")
        print(json.dumps(_summary(done)))
        return
    err.print(f"run dir: {run_dir}")
    try:
        code, metrics = train(
            cfg,
            run_dir,
            overfit_tokens=overfit_tokens,
            progress=not no_progress,
            lock_wait_s=lock_wait,
        )
    except (ConfigError, RunLocked) as e:
        fail(str(e), EXIT_BAD_CONFIG)
    print(json.dumps(_summary(metrics)))
    raise typer.Exit(code)


def _summary(m: dict) -> dict:
    out = {
        "run_dir": m["run"]["run_dir"],
        "status": m["run"]["status"],
        "tokens": m["training"]["tokens_seen"],
        "train_loss": m["training"]["train_loss"],
        "sample": m["provenance"]["sample"],
    }
    if m.get("dev"):
        out.update(dev_token_ppl=m["dev"]["token_ppl"], dev_word_ppl=m["dev"]["word_ppl"])
    if m.get("smallbench") and "macro_acc" in m["smallbench"]:
        out["smallbench_macro_acc"] = m["smallbench"]["macro_acc"]
    return out


def _lr_find(cfg, run_dir: Path) -> None:
    from trainer.lr_find import lr_find

    res = lr_find(cfg, run_dir)
    err.print(f"suggested LR: {res['suggested_lr']:.3g} (curve: {res['png']})")
    print(json.dumps(res))


@app.command("lr-find")
def lr_find_cmd(
    config: ConfigOpt = None,
    exp: ExpOpt = None,
    overrides: SetOpt = None,
    run_dir: RunDirOpt = None,
    logs: LogsOpt = Path("logs"),
) -> None:
    """LR range test: exponential sweep, loss-vs-LR curve (CSV + PNG), suggested LR."""
    from trainer.runs import default_run_dir

    cfg = _config(config, exp, overrides)
    _lr_find(cfg, run_dir or default_run_dir(cfg, logs) / "lr_find")


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path, typer.Option("--run-dir", "--run_dir", help="A run directory.")],
    smallbench_dir: Annotated[
        Path | None, typer.Option("--smallbench-dir", "--smallbench_dir")
    ] = None,
    only: Annotated[str, typer.Option(help="all, ppl, smallbench or profile")] = "all",
) -> None:
    """Evaluate a run's latest checkpoint; writes eval.json in the run directory."""
    from trainer.evaluation.run_dir import evaluate_run

    try:
        res = evaluate_run(run_dir, smallbench_dir=smallbench_dir, only=only)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if res.get("smallbench") and "tasks" in res["smallbench"]:
        for task, t in res["smallbench"]["tasks"].items():
            err.print(f"{task:<42} {t['acc']:.3f} +- {t['stderr']:.3f} (n={t['n']})")
        err.print(f"{'macro':<42} {res['smallbench']['macro_acc']:.3f}")
    print(
        json.dumps(
            {k: v for k, v in res.items() if k != "smallbench"}
            | {"smallbench_macro_acc": (res.get("smallbench") or {}).get("macro_acc")}
        )
    )


@data_app.command("smallbench")
def data_smallbench(
    output: Annotated[Path, typer.Option("--output")] = Path("data/smallbench"),
    mirror: Mirror = None,
    corpus: Annotated[Path, typer.Option(help="Training corpus for the held-out check.")] = Path(
        "data/wikitext-2/train.txt"
    ),
    pairs_per_task: Annotated[int, typer.Option("--pairs-per-task", "--pairs_per_task")] = 200,
) -> None:
    """Fetch BLiMP and build the SmallBench suite (held out from the training corpus)."""
    from trainer.prep.fetch import FetchError
    from trainer.prep.smallbench import build_suite

    if not corpus.is_file():
        err.print(
            f"[yellow]warning:[/] {corpus} not found: the held-out check is skipped "
            "(run scripts/download_wikitext.py first to enable it)"
        )
    try:
        m = build_suite(output, mirror=mirror, corpus=corpus, pairs_per_task=pairs_per_task)
    except (FetchError, ValueError) as e:
        fail(str(e))
    for task, t in m["tasks"].items():
        err.print(
            f"{task:<42} {t['field']:<17} {t['pairs']:>4} pairs "
            f"({t['dropped_in_training_corpus']} dropped: seen in training corpus)"
        )
    print(
        json.dumps(
            {
                "output": str(output),
                "tasks": len(m["tasks"]),
                "pairs": sum(t["pairs"] for t in m["tasks"].values()),
                "held_out_check": m["held_out_check"],
            }
        )
    )


@app.command("report-exit")
def report_exit_cmd(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run's directory.")],
    code: Annotated[int, typer.Option(help="How `pax train` exited.")],
) -> None:
    """For a launched job's run script: tell the ledger how the trainer ended (exit.json beside
    the run, and POST /runs/{id}/exit when the service can be reached)."""
    from trainer.reporting.http import report_exit

    print(json.dumps({"code": code, "reported": report_exit(run_dir, code)}))


db_app = typer.Typer(help="The ledger's schema (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


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


def build_app(settings, start_scheduler: bool = True):
    """The composition root: the service plus the dashboard's routers."""
    from runner.app import create_app
    from web.pages import router as web_router

    return create_app(settings, extra_routers=[web_router], start_scheduler=start_scheduler)


@app.command("serve")
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
        open_ledger(settings).close()
        app_ = build_app(settings)
    except (StartupError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    err.print(
        f"pax serve: ledger {redacted(settings.ledger)}, http://{settings.host}:{settings.port} "
        f"(API /api/v1, docs /docs), concurrency {settings.concurrency}"
    )
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
    )


sweep_app = typer.Typer(help="Plans and sweeps on a running service.", no_args_is_help=True)
app.add_typer(sweep_app, name="sweep")
UrlOpt = Annotated[str, typer.Option("--url", envvar="PAX_URL", help="The service.")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PAX_ADMIN_TOKEN",
        help="Admin token (default: PAX_ADMIN_TOKEN, or the token file next to --db).",
    ),
]


def _admin_token(token: str | None, db: Path | None = None) -> str:
    from runner.auth import token_file
    from runner.settings import Settings

    if token:
        return token
    path = token_file(db or Settings().db)
    if path.is_file():
        return path.read_text().strip()
    fail(f"no admin token: pass --token, set PAX_ADMIN_TOKEN, or run where {path} exists")


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
    import httpx

    file = resolve_config(file)
    if not file.is_file():
        fail(f"{file} not found")
    try:
        r = httpx.post(
            f"{url.rstrip('/')}/api/v1/sweeps",
            params={"launcher": launcher} if launcher else None,
            content=file.read_bytes(),
            headers={
                "Authorization": f"Bearer {_admin_token(token)}",
                "Content-Type": "application/yaml",
            },
            timeout=120,
        )
    except httpx.HTTPError as e:
        fail(f"cannot reach the service at {url} ({e}); start it with `pax serve`")
    if r.status_code != 201:
        fail(f"{r.status_code}: {r.json().get('detail', r.text)}")
    print(json.dumps(r.json()))


@sweep_app.command("status")
def sweep_status(sweep_id: int, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """A sweep's phase, run counts and decisions."""
    import httpx

    r = httpx.get(f"{url.rstrip('/')}/api/v1/sweeps/{sweep_id}", timeout=60)
    if r.status_code != 200:
        fail(f"{r.status_code}: {r.json().get('detail', r.text)}")
    print(json.dumps(r.json(), indent=2))


@app.command("aggregate")
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


@app.command("worker")
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
    name: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
    runs_root: Annotated[Path, typer.Option("--runs-root")] = Path("var/worker-runs"),
    poll_s: Annotated[float, typer.Option("--poll-s")] = 5.0,
    max_runs: Annotated[int, typer.Option("--max-runs", help="Stop after N runs (0 = never).")] = 0,
    idle_exit_s: Annotated[
        float,
        typer.Option(
            "--idle-exit-s", help="Stop after the queue stayed empty this long (0 = never)."
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
) -> None:
    """Pull queued runs from a service and train them here (GPU if present). The worker token
    comes from the environment or a file, never the command line (ps shows command lines)."""
    import os

    from runner.auth import TokenError, read_token_file
    from runner.launch.worker import run_worker

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
            gpus=gpus,
            checkpoint_url=checkpoint_url,
            accelerator=accelerator,
            spot=spot,
            log=err.print,
        )
    )


sky_app = typer.Typer(
    help="Cloud spot runs through SkyPilot (pip install .[cloud]).", no_args_is_help=True
)
app.add_typer(sky_app, name="sky")


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
    from runner.launch.sky_cli import sky_launch as launch

    try:
        out = launch(
            resolve_config(config),
            exp=exp,
            url=url,
            token=_admin_token(token),
            dry_run=dry_run,
            confirm=(lambda msg: True) if yes else (lambda msg: typer.confirm(msg, default=False)),
            log=err.print,
        )
    except (ValueError, RuntimeError, FileNotFoundError, httpx_errors()) as e:
        fail(str(e))
    if dry_run:
        print(out.pop("task_yaml"))
    print(json.dumps(out))


def httpx_errors():
    import httpx

    return httpx.HTTPError


@app.command("demo")
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


release_cli.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
