"""Plans: cells, promotion choices, submission over the API, automatic and manual promotion."""

import csv
import io
import json
import math
import subprocess
import sys

import pytest
import yaml

from runner.study.plan_spec import Finalists, load_plan_text
from runner.study.plan_spec import cells as plan_cells
from runner.study.promotion import choose
from tests.conftest import ROOT
from tests.helpers import post_result, small_plan, submit, tiny_raw, wait_until

pytestmark = pytest.mark.both_backends  # SQLite and PostgreSQL (tests/runner/conftest.py)


def test_study_plan_cells():
    plan, kind = load_plan_text((ROOT / "configs" / "plan_10m.yaml").read_text())
    assert kind == "plan"
    cells = {c["cell"]: c for c in plan_cells(plan)}
    shapes = ["baseline", "emb25", "emb45", "glu2x", "glu3x", "glu4x"]
    axes = ("baseline", "embedding_ratio", "glu_expansion")
    # each shape at the plan's LR (lr_grid holds 1), then at the grid's other multipliers
    assert plan.ranking.lr_grid == [0.5, 1.0, 2.0]
    assert [c for c in cells if cells[c]["axis"] in axes] == shapes + [
        f"{s}-lr{m}x" for s in shapes for m in ("0.5", "2")
    ]
    assert cells["baseline"]["is_baseline"] and cells["baseline"]["model"] == {
        "embedding_ratio": 0.35,
        "glu_expansion": 2.66,
        "vocab_size": 16000,
        "tied_lm_head": True,
    }
    ablation = [c for c in cells.values() if c["axis"] == "ablation"]
    # V x tied x share = 12 points; the 3 at V=16k tied are ranking cells already; each of the
    # other 9 at the grid's 3 LRs
    assert len(ablation) == 9 * 3
    shape = ("vocab_size", "tied_lm_head", "embedding_ratio")
    assert len({tuple(c["model"][k] for k in shape) for c in ablation}) == 9
    assert plan.ranking.max_tokens <= 5_000_000 and plan.finalists.seeds == [1, 2, 3]


def test_ranking_budget_is_capped():
    doc = yaml.safe_load((ROOT / "configs" / "plan_10m.yaml").read_text())
    doc["ranking"]["max_tokens"] = "6M"
    with pytest.raises(ValueError, match="ranking.max_tokens"):
        load_plan_text(yaml.safe_dump(doc))


def cell(name, ppl, std=0.0, killed=0, lat=1.0, seeds=1):
    return {
        "cell": name,
        "dev_ppl": ppl,
        "dev_ppl_std": std,
        "killed": killed,
        "all_killed": killed >= seeds,
        "latency_ms": lat,
        "ppls": [ppl] * seeds,
        "is_baseline": False,
    }


def test_a_cell_with_a_killed_seed_ranks_on_its_finished_seeds():
    """One killed seed dropped the whole cell from promotion, and the cell's mean averaged in
    the truncated run's PPL."""
    from types import SimpleNamespace

    from runner.study.promotion import choose, rank_cells

    def run(rid, cell, status, **kw):
        return SimpleNamespace(
            id=rid, cell=cell, name=cell, status=status, axis="embedding_ratio",
            is_baseline=False, spec_json="{}", plan_json=None, **kw,
        )  # fmt: skip

    runs = [run(1, "a", "succeeded"), run(2, "a", "killed"), run(3, "b", "succeeded"),
            run(4, "c", "killed"), run(5, "c", "killed")]  # fmt: skip
    ppl = {1: 100.0, 2: 400.0, 3: 105.0, 4: 300.0, 5: 320.0}
    ranked = rank_cells(runs, {k: {"dev": {"word_ppl": v}} for k, v in ppl.items()})
    a, b, c = (next(x for x in ranked if x["cell"] == n) for n in "abc")
    assert [x["cell"] for x in ranked] == ["a", "b", "c"]
    assert a["dev_ppl"] == 100.0 and a["ppls"] == [100.0] and not a["all_killed"]
    assert a["note"] == "ranked on its 1 finished seed(s); 1 killed (not averaged in)"
    assert c["all_killed"] and c["dev_ppl"] == 310.0 and b["note"] is None
    assert [x["cell"] for x in choose(ranked, Finalists())[0]] == ["a"]


@pytest.mark.parametrize(
    "ranked,fin,expected",
    [
        ([cell("a", 100), cell("b", 110)], Finalists(), ["a"]),
        ([cell("a", 100), cell("b", 100.5)], Finalists(thin_margin=0.01), ["a", "b"]),
        (
            [cell("a", 100, std=2.0, seeds=2), cell("b", 101.5)],
            Finalists(thin_margin=0.001),
            ["a", "b"],
        ),
        (
            [cell("a", 100, std=2.0, seeds=2), cell("b", 101.5)],
            Finalists(thin_margin=0.001, use_seed_spread=False),
            ["a"],
        ),
        ([cell("a", 90, killed=1), cell("b", 100), cell("c", 120)], Finalists(), ["b"]),
        (
            [cell("a", 100), cell("b", 105), cell("c", 106)],
            Finalists(top_k=2, thin_margin=0.05),
            ["a", "b", "c"],
        ),
        ([cell("a", math.inf)], Finalists(), []),
    ],
)
def test_choose(ranked, fin, expected):
    picks, why = choose(ranked, fin)
    assert [c["cell"] for c in picks] == expected
    assert why


# Its runs are for workers: these tests decide, nothing trains (and the V=16k data a local
# launch would need is not there: a local plan would be refused at submission).
def test_submit_records_cells_and_infeasible(service, tokenized_dir):
    r = submit(service, small_plan(tokenized_dir.parent))
    assert r.status_code == 201, r.text
    sw = r.json()
    detail = service.get(f"/sweeps/{sw['id']}").json()
    cells = {c["cell"]: c for c in detail["cells"]}
    assert cells["baseline"]["is_baseline"] and "control-lr-tiny" in cells
    infeasible = [d for d in detail["decisions"] if d["kind"] == "infeasible"]
    # V=16k untied at 0.45 cannot be planned at 10M: recorded with the planner's message
    assert [d["data"]["cell"] for d in infeasible] == ["v16000-untied-emb45"]
    assert "no plan within tolerances" in infeasible[0]["reason"]
    assert "v16000-untied-emb45" not in cells and "v16000-untied-emb25" in cells
    md = service.get(f"/sweeps/{sw['id']}/decisions.md").text
    assert "Infeasible cells" in md and "v16000-untied-emb45" in md
    assert sw["phase"] == "ranking" and sw["runs"]["queued"] == len(cells)


def test_study_sweep_file_is_a_one_phase_sweep(service, tokenized_dir, tmp_path):
    doc = {
        "base": tiny_raw(tokenized_dir.parent),
        "experiments": {
            "emb25": {"model": {"embedding_ratio": 0.25}},
            "emb35": {"model": {"embedding_ratio": 0.35}},
            "emb45": {"model": {"embedding_ratio": 0.45}},
        },
    }
    r = submit(service, yaml.safe_dump(doc))
    assert r.status_code == 201, r.text
    detail = service.get(f"/sweeps/{r.json()['id']}").json()
    assert detail["kind"] == "sweep"
    base = [c["cell"] for c in detail["cells"] if c["is_baseline"]]
    assert base == ["emb35"]
    assert {d["data"]["cell"] for d in detail["decisions"] if d["kind"] == "infeasible"} <= {
        "emb25",
        "emb45",
    }


def test_invalid_plan_names_the_field(service):
    r = submit(service, "name: x\nfinalists: {seeds: []}\n")
    assert r.status_code == 422 and "finalists.seeds" in r.json()["detail"]
    r = submit(service, "- not a mapping")
    assert r.status_code == 422 and "mapping" in r.json()["detail"]
    r = service.post("/sweeps", token=None, content="name: x")
    assert r.status_code == 401


def test_automatic_then_manual_promotion(service, tokenized_dir):
    sw = submit(service, small_plan(tokenized_dir.parent)).json()
    detail = service.get(f"/sweeps/{sw['id']}").json()
    ppl = {
        "baseline": 100.0,
        "emb45": 90.0,
        "glu2x": 95.0,
        "v16000-untied-emb25": 80.0,
        "control-lr-tiny": 500.0,
    }
    # manual promotion before the phase has finished is refused with the reason
    r = service.post(
        f"/sweeps/{sw['id']}/promote",
    )
    assert r.status_code == 409 and "not finished" in r.json()["detail"]
    for c in detail["cells"]:
        post_result(
            service,
            c["run_id"],
            ppl.get(c["cell"], 120.0),
            status="killed" if c["cell"] == "control-lr-tiny" else "succeeded",
        )
    # the scheduler promotes by itself once ranking has finished
    fin = wait_until(
        lambda: [
            c
            for c in service.get(f"/sweeps/{sw['id']}").json()["cells"]
            if c["phase"] == "finalists"
        ]
    )
    assert sorted({(c["cell"], c["seed"]) for c in fin}) == [
        ("emb45", 1),
        ("emb45", 2),
        ("emb45", 3),
        ("glu2x", 1),
        ("glu2x", 2),
        ("glu2x", 3),
    ]
    detail = service.get(f"/sweeps/{sw['id']}").json()
    assert detail["phase"] == "finalists"
    promo = [d for d in detail["decisions"] if d["kind"] == "promotion"][0]["data"]
    assert promo["axes"]["embedding_ratio"]["promoted"] == ["emb45"]
    assert promo["axes"]["glu_expansion"]["promoted"] == ["glu2x"]
    assert "moves" in promo["ablation"]
    md = service.get(f"/sweeps/{sw['id']}/decisions.md").text
    assert "Promotion (automatic)" in md and "| 1 | emb45 | 90.000 |" in md
    # again by hand, with an override: only the missing finalist runs are added
    r = service.post(
        f"/sweeps/{sw['id']}/promote",
        json={"cells": ["emb45", "baseline"]},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["created_runs"]) == 3  # baseline x 3 seeds; emb45 already there
    r = service.post(
        f"/sweeps/{sw['id']}/promote",
        json={"cells": ["nope"]},
    )
    assert r.status_code == 409 and "unknown cells" in r.json()["detail"]


@pytest.mark.slow
def test_bad_config_is_killed_and_good_is_not(service_factory, tokenized_dir):
    """Real trainers: a tiny learning rate trails the baseline and is stopped by the rule. The
    verdict is a decision; the run becomes killed when its trainer exits, after its final
    evaluation, and its cost covers that evaluation. One run at a time, the baseline first
    (its priority); a control that runs ahead of its baseline is the next test's case."""
    svc = service_factory(concurrency=1, PAX_ACCELERATOR="T4")
    base = tiny_raw(
        tokenized_dir.parent, max_tokens=64 * 8 * 64, eval={"every_tokens": 512, "max_tokens": 1024}
    )
    base.pop("name")
    plan = {
        "name": "kill",
        "baseline": {
            "embedding_ratio": 0.35,
            "glu_expansion": 2.66,
            "vocab_size": 512,
            "tied_lm_head": True,
        },
        "base": base,
        "ranking": {
            "max_tokens": 64 * 8 * 64,
            "seeds": [7],
            "embedding_ratio": [0.35],
            "glu_expansion": [2.66],
        },
        "controls": [{"name": "lr-tiny", "overrides": {"optim": {"lr": 1e-6}}}],
        "finalists": {"max_tokens": 2048, "seeds": [1]},
        "kill_rule": {"margin": 0.03, "relative": True, "window_tokens": 2048},
    }
    sw = submit(svc, json.dumps(plan), "application/json").json()

    def done():
        d = svc.get(f"/sweeps/{sw['id']}").json()
        st = {c["cell"]: c["status"] for c in d["cells"] if c["phase"] == "ranking"}
        return d if all(s in ("succeeded", "killed", "failed") for s in st.values()) else None

    d = wait_until(done, 240, "the ranking runs finishing")
    st = {c["cell"]: (c["status"], c["run_id"]) for c in d["cells"] if c["phase"] == "ranking"}
    assert st["baseline"][0] == "succeeded"
    assert st["control-lr-tiny"][0] == "killed"
    killed = st["control-lr-tiny"][1]
    events = svc.get(f"/runs/{killed}/events").json()
    verdict = [e for e in events if e["kind"] == "kill"]
    assert len(verdict) == 1 and verdict[0]["reason"].startswith("kill rule:")
    evidence = verdict[0]["data"]
    assert evidence["baseline_run"] == st["baseline"][1] and len(evidence["run"]) >= 2
    state = [e for e in events if e["to_status"] == "killed"]
    assert len(state) == 1 and state[0]["reason"] == verdict[0]["reason"]
    assert state[0]["id"] > verdict[0]["id"]  # decided first, killed when the trainer exited
    # the trainer obeyed: its result says killed, with the final evaluation
    run = svc.get(f"/runs/{killed}").json()
    res = run["result"]
    assert res["run"]["status"] == "killed" and res["run"]["exit_code"] == 3
    assert res["dev"]["token_ppl"] > 0
    # the charge runs up to the exit, so it covers the final evaluation (which ended when the
    # trainer wrote metrics.json), not just the time up to the decision
    charged_s = run["gpu_hours"] * 3600
    started = next(e["time"] for e in events if e["to_status"] == "launching")
    assert charged_s >= res["run"]["finished_at"] - started > evidence_time(verdict[0]) - started
    md = svc.get(f"/sweeps/{sw['id']}/decisions.md").text
    assert "## Kills" in md and f"run {killed}: kill rule:" in md
    # the rule with the numbers it used, and the kill's gap in relative and sigma units
    assert "## Kill rule" in md and "3.0% of the baseline's PPL" in md and "40%" in md
    assert "gap at the last point" in md and "sigma: one seed" in md


def test_a_run_ahead_of_its_baseline_is_judged_when_the_baseline_catches_up(service, tokenized_dir):
    """Run side by side, a control that posted its in-window points before the baseline had got
    that far was never judged at them (its own later points lie past 90% of its budget, where
    the rule no longer decides), as the kill test's old docstring warned. The baseline's
    points now judge the phase's running runs again."""
    from runner.ledger.db import make_engine
    from runner.ledger.lifecycle import claim_queued

    sw = submit(service, small_plan(tokenized_dir.parent)).json()
    cells = service.get(f"/sweeps/{sw['id']}").json()["cells"]
    ids = {c["cell"]: c["run_id"] for c in cells if c["phase"] == "ranking"}
    engine = make_engine(service.db)
    try:
        tokens = {
            run.id: t
            for run, t in claim_queued(engine, limit=100, launcher="test", kinds=("worker",))
        }
    finally:
        engine.dispose()

    def post(cell, points):
        body = {"points": [{"step": t // 64, "tokens": t, "name": n, "value": v}
                           for t, n, v in points]}  # fmt: skip
        with service.client(token=tokens[ids[cell]]) as c:
            r = c.post(f"/runs/{ids[cell]}/metrics", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    # ranking budget 4,096 tokens: judged from 1,638 to 3,686, window 1,024
    ahead = post("control-lr-tiny", [(2048, "dev/word_ppl", 500.0), (3072, "dev/word_ppl", 500.0)])
    assert ahead["action"] == "continue"  # the baseline has no curve yet: nothing to compare
    caught_up = post("baseline", [(t, "dev/word_ppl", 100.0) for t in (1024, 2048, 3072)])
    assert caught_up["action"] == "continue"  # the baseline itself is never judged
    later = post("control-lr-tiny", [(3500, "train/loss", 6.0)])
    assert later["action"] == "stop" and later["reason"].startswith("kill rule:")
    events = service.get(f"/runs/{ids['control-lr-tiny']}/events").json()
    (verdict,) = [e for e in events if e["kind"] == "kill"]
    assert verdict["data"]["baseline_run"] == ids["baseline"]
    assert [p[0] for p in verdict["data"]["run"]] == [2048, 3072]
    # runs that trail by less than the margin are judged too, and left alone
    assert (
        post("emb45", [(2048, "dev/word_ppl", 102.0), (3072, "dev/word_ppl", 101.0)])["action"]
        == "continue"
    )
    post("baseline", [(4096, "dev/word_ppl", 100.0)])
    assert post("emb45", [(3600, "train/loss", 5.0)])["action"] == "continue"


def evidence_time(event: dict) -> float:
    return event["time"]


@pytest.mark.slow
@pytest.mark.sqlite_only  # the script's columns against the service's CSV: not the ledger's
def test_aggregate_script_matches_results_csv_columns(tmp_path, tokenized_dir, service):
    from trainer.config import validate
    from trainer.train import train

    # two points the planner can meet at V=512
    for name, r, total in (("emb35", 0.35, 60_000), ("emb25", 0.25, 80_000)):
        cfg = validate(
            tiny_raw(
                tokenized_dir.parent,
                name=name,
                max_tokens=4 * 8 * 64,
                model={"embedding_ratio": r, "total_params": total},
                eval={"profile": True, "profile_repeats": 3},
            )
        )
        train(cfg, tmp_path / "logs" / name / "r", progress=False)
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "aggregate_results.py"),
            "--log_dir",
            "logs",
            "--output",
            "results_summary.csv",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader((tmp_path / "results_summary.csv").open()))
    assert len(rows) == 2 and {r["name"] for r in rows} == {"emb35", "emb25"}
    api_cols = next(csv.reader(io.StringIO(service.get("/results.csv").text)))
    assert list(rows[0].keys()) == api_cols
    plots = list((tmp_path / "reports" / "aggregate" / "plots").glob("*.png"))
    assert {p.stem for p in plots} >= {"ppl_vs_embedding_ratio", "ppl_vs_glu_expansion"}
    # latency vs PPL: one figure per phase and device (the runs of logs/ have no phase)
    assert [p.stem for p in plots if p.stem.startswith("latency_vs_ppl_runs_")]
    assert all(p.with_suffix(".svg").is_file() for p in plots)
    early = list(csv.DictReader((tmp_path / "reports" / "aggregate" / "early_results.csv").open()))
    assert "ppl_slope_per_decade" in early[0]
