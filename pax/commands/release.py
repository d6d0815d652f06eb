"""The commands that end a study: `pax report`, `pax bundle`, `pax reproduce`, `pax export`
and `pax release`. They read the ledger directly (no service needed) and print one JSON
document as their last line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from pax.console import err, fail

SweepOpt = Annotated[int, typer.Option("--sweep", help="The sweep's id.", min=1)]
DbOpt = Annotated[Path | None, typer.Option("--db", help="Ledger file \\[env PAX_DB; var/pax.db].")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="The ledger as a SQLAlchemy URL \\[env PAX_DATABASE_URL]."),
]
MirrorOpt = Annotated[
    str | None,
    typer.Option("--mirror", help="Data mirror (folder or URL) \\[env PAX_DATA_MIRROR]."),
]
TAG = re.compile(r"^v\d+\.\d+\.\d+([-.][0-9A-Za-z.]+)?$")


def open_ledger(db: Path | None, database_url: str | None):
    """An engine on an existing ledger (a missing SQLite file is an error, not a new ledger)."""
    from pydantic import ValidationError

    from runner.ledger.db import make_engine, redacted, sqlite_path
    from runner.settings import Settings
    from trainer.config import describe_errors

    given = {k: v for k, v in {"db": db, "database_url": database_url}.items() if v is not None}
    try:
        ledger = Settings(**given).ledger
    except ValidationError as e:
        fail(describe_errors(e.errors(), "settings"))
    path = sqlite_path(ledger)
    if path is not None and not path.is_file():
        fail(f"--db {path}: no ledger there; give the ledger the sweep ran on (--db or $PAX_DB)")
    try:
        return make_engine(ledger)
    except Exception as e:  # noqa: BLE001 - a driver's error, said in one line
        fail(f"cannot open the ledger {redacted(ledger)}: {e}")


def _sweep_or_fail(engine, sweep_id: int) -> None:
    from runner.ledger.sweeps import get_sweep, list_sweeps

    try:
        get_sweep(engine, sweep_id=sweep_id)
    except LookupError:
        known = ", ".join(str(s.id) for s in list_sweeps(engine)) or "none"
        fail(f"--sweep {sweep_id}: no such sweep in this ledger (sweeps: {known})")


def report_cmd(
    sweep: SweepOpt,
    db: DbOpt = None,
    database_url: UrlOpt = None,
    html: Annotated[
        bool, typer.Option("--html", help="Also the static page RESULTS.html.")
    ] = False,
    pdf: Annotated[bool, typer.Option(help="SUMMARY.pdf when a converter is here.")] = True,
) -> None:
    """Write a sweep's report folder from the ledger: RESULTS.md, SUMMARY.md (+ PDF), a model
    card per finalist, figures (300 dpi PNG + SVG) and tables; deterministic."""
    from runner.release.report import write_release_report

    engine = open_ledger(db, database_url)
    _sweep_or_fail(engine, sweep)
    files = write_release_report(engine, sweep, html=html, pdf=pdf)
    err.print(f"report: {files['results_md']}" + (f", {files['html']}" if html else ""))
    print(json.dumps(files))


def bundle_cmd(
    sweep: SweepOpt,
    db: DbOpt = None,
    database_url: UrlOpt = None,
    out: Annotated[Path | None, typer.Option(help="The tarball to write.")] = None,
    allow_dirty: Annotated[
        bool, typer.Option(help="Bundle from a tree with uncommitted changes (recorded).")
    ] = False,
) -> None:
    """One tarball (with a SHA-256 manifest) that rebuilds any run of the sweep."""
    from runner.release.bundle import BundleError, write_bundle

    engine = open_ledger(db, database_url)
    _sweep_or_fail(engine, sweep)
    try:
        res = write_bundle(engine, sweep, out, allow_dirty=allow_dirty)
    except BundleError as e:
        fail(str(e))
    err.print(f"bundle: {res['bundle']} ({res['bytes']:,} bytes, {res['files']} files)")
    print(json.dumps(res))


def reproduce_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle from `pax bundle`.")],
    run: Annotated[str, typer.Option("--run", help="Run directory name, ledger id or name.")],
    mirror: MirrorOpt = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Where to rebuild (default var/reproduce/<bundle>).")
    ] = None,
) -> None:
    """Retrain one run from a bundle alone (data fetched and checked by hash) and compare its
    metrics with the bundle's. Exit 0: equal bit for bit; 1: they differ."""
    from trainer.reproduce import ReproduceError, reproduce

    work = workdir or Path("var/reproduce") / Path(bundle).name.split(".")[0]
    try:
        res = reproduce(bundle, run, work, mirror=mirror)
    except (ReproduceError, FileNotFoundError) as e:
        fail(str(e))
    verdict = "equal, bit for bit" if res["equal"] else f"DIFFERENT: {', '.join(res['differs'])}"
    err.print(f"reproduce {res['run']}: {verdict} ({len(res['compared'])} fields compared)")
    print(json.dumps(res))
    raise typer.Exit(0 if res["equal"] else 1)


def _run_dir(run: str, db: Path | None, database_url: str | None) -> Path:
    if not run.isdigit():
        return Path(run)
    from runner.ledger.runs import get_run

    try:
        r = get_run(open_ledger(db, database_url), run_id=int(run))
    except LookupError:
        fail(f"--run {run}: no such run in the ledger")
    if not r.run_dir:
        fail(f"--run {run}: it never started, so it has no weights")
    return Path(r.run_dir)


def export_cmd(
    run: Annotated[str, typer.Option("--run", help="A ledger run id, or a run directory.")],
    out: Annotated[Path, typer.Argument(help="The folder to write.")],
    fmt: Annotated[str, typer.Option("--format", help="Only hf (Hugging Face Llama).")] = "hf",
    db: DbOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Export a run's final model: config.json (LlamaConfig), model.safetensors, tokenizer."""

    from trainer.export import export_hf

    if fmt != "hf":
        fail(f"--format {fmt}: the only format is hf")
    try:
        res = export_hf(_run_dir(run, db, database_url), out)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    err.print(f"exported {res['run']} ({res['weights']} weights) to {out}")
    print(json.dumps(res))


def release_cmd(
    sweep: SweepOpt,
    tag: Annotated[str, typer.Option("--tag", help="The version, vX.Y.Z.")],
    db: DbOpt = None,
    database_url: UrlOpt = None,
    mirror: MirrorOpt = None,
    check_run: Annotated[
        str | None,
        typer.Option(help="The run rebuilt as the check (default: the best finalist's)."),
    ] = None,
) -> None:
    """Check the tree is clean and the bundle reproduces, write the release notes from
    RESULTS.md and create the annotated tag locally (never pushed)."""
    from runner.release.bundle import BundleError
    from runner.release.tag import ReleaseError, release
    from trainer.reproduce import ReproduceError

    if not TAG.match(tag):
        fail(f"--tag {tag}: must look like v1.2.3")
    engine = open_ledger(db, database_url)
    _sweep_or_fail(engine, sweep)
    try:
        res = release(engine, sweep, tag, mirror=mirror, check_run=check_run)
    except (ReleaseError, BundleError, ReproduceError) as e:
        fail(str(e))
    err.print(f"tagged {tag} (local; push it yourself): notes in {res['notes']}")
    print(json.dumps(res))


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("bundle")(bundle_cmd)
    app.command("reproduce")(reproduce_cmd)
    app.command("export")(export_cmd)
    app.command("release")(release_cmd)
