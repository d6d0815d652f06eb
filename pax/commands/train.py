"""`pax train`, `pax lr-find`, `pax eval` and `pax report-exit`: one run, on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import ConfigOpt, ExpOpt, LogsOpt, RunDirOpt, SetOpt, load_config
from pax.console import err, fail


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

    cfg = load_config(config, exp, overrides)
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


def lr_find_cmd(
    config: ConfigOpt = None,
    exp: ExpOpt = None,
    overrides: SetOpt = None,
    run_dir: RunDirOpt = None,
    logs: LogsOpt = Path("logs"),
) -> None:
    """LR range test: exponential sweep, loss-vs-LR curve (CSV + PNG), suggested LR."""
    from trainer.runs import default_run_dir

    cfg = load_config(config, exp, overrides)
    _lr_find(cfg, run_dir or default_run_dir(cfg, logs) / "lr_find")


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


def report_exit_cmd(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="The run's directory.")],
    code: Annotated[int, typer.Option(help="How `pax train` exited.")],
) -> None:
    """For a launched job's run script: tell the ledger how the trainer ended (exit.json beside
    the run, and POST /runs/{id}/exit when the service can be reached)."""
    from trainer.reporting.http import report_exit

    print(json.dumps({"code": code, "reported": report_exit(run_dir, code)}))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("lr-find")(lr_find_cmd)
    app.command("eval")(eval_cmd)
    app.command("report-exit")(report_exit_cmd)
