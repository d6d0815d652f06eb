"""`pax release --sweep ID --tag vX.Y.Z`: the study's release, made locally. In order:
1) the work tree is clean and the tag is new, 2) the report and the bundle are written,
3) one run is rebuilt from the bundle alone and must match bit for bit, 4) the release notes
are written from RESULTS.md, 5) an annotated tag is created. Nothing is pushed."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from sqlalchemy.engine import Engine

from runner.release.bundle import git_state, write_bundle
from runner.release.report import write_release_report
from trainer.reproduce import reproduce

NOTE_SECTIONS = ("## Question and answer", "## Finalists")


class ReleaseError(RuntimeError):
    """The release is refused; the message says why and what to do."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def sections(markdown: str, wanted: tuple[str, ...]) -> list[str]:
    """The `## ` sections of `markdown` whose headings are in `wanted`, in order."""
    out, keep = [], False
    for line in markdown.splitlines():
        if line.startswith("## "):
            keep = line in wanted
        if keep:
            out.append(line)
    return out


def release_notes(results_md: str, tag: str, bundle: dict, check: dict) -> str:
    lines = results_md.splitlines()
    head = [f"# {tag}: {lines[0].removeprefix('# ')}", "", *lines[1:4]]
    if any("SAMPLE data" in ln for ln in lines[:8]):
        head += [next(ln for ln in lines if ln.startswith("> **SAMPLE")), ""]
    body = sections(results_md, NOTE_SECTIONS)
    proof = [
        "## Reproduction",
        "",
        f"- Bundle: `{Path(bundle['bundle']).name}`, SHA-256 `{bundle['sha256']}`, "
        f"{bundle['bytes']:,} bytes, {bundle['files']} files; code at `{bundle['git']['sha']}`.",
        f"- `pax reproduce {Path(bundle['bundle']).name} --run {check['run']}` rebuilt that run "
        f"from the bundle alone: its {len(check['compared'])} deterministic metric fields are "
        "equal, bit for bit.",
        "",
        "Attached: RESULTS.md, SUMMARY.md, the model cards, RESULTS.html and the bundle.",
    ]
    return "\n".join([*head, *body, "", *proof]).rstrip() + "\n"


def release(
    engine: Engine,
    sweep_id: int,
    tag: str,
    *,
    repo: Path = Path("."),
    mirror: str | None = None,
    check_run: str | None = None,
    pricing=None,
) -> dict:
    git = git_state(repo)
    if git["dirty"] is None:
        raise ReleaseError(f"{Path(repo).resolve()} is not a git work tree: nothing to tag")
    if git["dirty"]:
        raise ReleaseError(
            "the work tree has uncommitted changes: commit or stash them, then release"
        )
    if _git(repo, "rev-parse", "-q", "--verify", f"refs/tags/{tag}").returncode == 0:
        raise ReleaseError(f"--tag {tag}: that tag exists already; choose the next version")
    files = write_release_report(engine, sweep_id, pricing, html=True)
    bundle = write_bundle(engine, sweep_id, repo=repo)
    run = check_run or (bundle["best_finalist"] or {}).get("run")
    if not run:
        raise ReleaseError(
            "no finalist finished, so there is no result to check; pass --check-run NAME"
        )
    with tempfile.TemporaryDirectory(prefix="pax-release-") as work:
        check = reproduce(Path(bundle["bundle"]), run, Path(work), mirror=mirror)
    if not check["equal"]:
        raise ReleaseError(
            f"the bundle does not reproduce {check['run']}: {', '.join(check['differs'])} "
            "differ; no tag was made"
        )
    notes = Path(files["results_md"]).with_name("RELEASE_NOTES.md")
    notes.write_text(release_notes(Path(files["results_md"]).read_text(), tag, bundle, check))
    # verbatim: git would drop the notes' "# " heading lines as comments
    made = _git(repo, "tag", "-a", "--cleanup=verbatim", tag, "-F", str(notes.resolve()))
    if made.returncode != 0:
        raise ReleaseError(f"git tag {tag} failed: {made.stderr.strip()}")
    return {
        "tag": tag,
        "commit": git["sha"],
        "notes": str(notes),
        "bundle": bundle["bundle"],
        "bundle_sha256": bundle["sha256"],
        "checked_run": check["run"],
        "report": files["results_md"],
        "html": files.get("html"),
        "pushed": False,
    }
