"""`pax data wikitext`, `pax data smallbench` and `pax tokenize`: the study's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pax.commands.options import Mirror
from pax.console import err, fail

data_app = typer.Typer(help="Download the study's data sets.", no_args_is_help=True)


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


@data_app.command("smallbench")
def data_smallbench(
    output: Annotated[Path, typer.Option("--output")] = Path("data/smallbench"),
    mirror: Mirror = None,
    corpus: Annotated[Path, typer.Option(help="Training corpus for the held-out check.")] = Path(
        "data/wikitext-2/train.txt"
    ),
    pairs_per_task: Annotated[int, typer.Option("--pairs-per-task", "--pairs_per_task")] = 200,
    tasks: Annotated[
        str,
        typer.Option(
            help="smallbench (the study's 9 paradigms, in OUTPUT) or all (BLiMP's 67, in "
            "OUTPUT/all; a run scores them with eval.smallbench_tasks: all)."
        ),
    ] = "smallbench",
) -> None:
    """Fetch BLiMP and build the SmallBench suite (held out from the training corpus)."""
    from trainer.prep.fetch import FetchError
    from trainer.prep.smallbench import build_suite, suite_dir

    if not corpus.is_file():
        err.print(
            f"[yellow]warning:[/] {corpus} not found: the held-out check is skipped "
            "(run scripts/download_wikitext.py first to enable it)"
        )
    try:
        m = build_suite(
            output, mirror=mirror, corpus=corpus, pairs_per_task=pairs_per_task, tasks=tasks
        )
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
                "output": str(suite_dir(output, tasks)),
                "selection": tasks,
                "tasks": len(m["tasks"]),
                "pairs": sum(t["pairs"] for t in m["tasks"].values()),
                "held_out_check": m["held_out_check"],
            }
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command("tokenize")(tokenize)
