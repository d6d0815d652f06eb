"""Ranking and promotion, pure: cells ranked from their runs' results, the cells of one axis
(the view promotion, the report and the dashboard all use), the choice of finalists, and what
the micro-ablation found."""

from __future__ import annotations

import json
import math
import statistics

from runner.study.plan_spec import Finalists, PlanSpec, split_lr

AXES = ("embedding_ratio", "glu_expansion")


def final_ppl(result: dict | None) -> float | None:
    if not result:
        return None
    dev = result.get("dev") or {}
    return dev.get("word_ppl")  # comparable across vocab sizes, unlike token PPL


def lr_choice(items: list[tuple[str, str, float | None]]) -> dict[str, dict]:
    """Each shape's best LR under a plan's `ranking.lr_grid`: items are (run cell, status, dev
    PPL); a shape's LR ranks on its finished seeds' mean (its killed ones only when every seed
    at that LR was killed, and then after every LR with a finished seed). Returns per shape
    {"mult": the chosen multiplier, "curve": [{mult, dev_ppl, killed}] by multiplier}."""
    at: dict[str, dict[float, dict]] = {}
    for cell, status, ppl in items:
        shape, mult = split_lr(cell)
        e = at.setdefault(shape, {}).setdefault(mult, {"done": [], "killed": []})
        if isinstance(ppl, (int, float)) and math.isfinite(ppl):
            e["killed" if status == "killed" else "done"].append(float(ppl))
    out = {}
    for shape, by in at.items():
        curve = []
        for mult, e in sorted(by.items()):
            vals = e["done"] or e["killed"]  # no finished seed at this LR: it ranks as killed
            curve.append({"mult": mult, "dev_ppl": statistics.fmean(vals) if vals else None,
                          "killed": not e["done"]})  # fmt: skip
        best = min(
            curve,
            key=lambda c: (c["killed"], c["dev_ppl"] is None, c["dev_ppl"] or 0.0, c["mult"] != 1),
        )
        out[shape] = {"mult": best["mult"], "curve": curve}
    return out


def at_best_lr(rows: list[dict]) -> list[dict]:
    """Results rows with each shape's runs at its best LR only, named as the shape, carrying
    `lr_mult` and `lr_curve` (the other LRs' rows left out): what a ranking table shows under
    an LR grid. Rows of finalists and of plans without a grid pass through unchanged."""
    p1 = [r for r in rows if r.get("phase") in ("ranking", "ablation", None)]
    if not any(split_lr(r["cell"])[1] != 1.0 for r in p1):
        return rows
    choice = lr_choice([(r["cell"], r["status"], r.get("dev_word_ppl")) for r in p1])
    # the baseline's shape stays the baseline at whichever LR it ranks
    baseline = {split_lr(r["cell"])[0] for r in p1 if r.get("is_baseline")}
    out = []
    for r in rows:
        if r.get("phase") not in ("ranking", "ablation", None):
            out.append(r)
            continue
        shape, mult = split_lr(r["cell"])
        if mult == choice[shape]["mult"]:
            out.append({**r, "cell": shape, "lr_mult": mult, "lr_curve": choice[shape]["curve"],
                        "is_baseline": shape in baseline})  # fmt: skip
    return out


def rank_cells(runs: list, results: dict[int, dict]) -> list[dict]:
    """Cells of finished runs: mean/std dev PPL over seeds, latency; best first. A cell ranks
    on its seeds that trained to the end: a killed seed's truncated PPL is never averaged in
    (`note` says so), and a cell whose every seed was killed (`all_killed`) ranks after every
    other, on its killed seeds' PPLs; failed runs are left out (events, not evidence)."""
    by_cell: dict[str, dict] = {}
    runs = [r for r in runs if r.status in ("succeeded", "killed")]
    # under an LR grid, each shape ranks at its best LR (its other LRs' runs are its curve)
    choice = lr_choice([(r.cell or r.name, r.status, final_ppl(results.get(r.id))) for r in runs])
    for r in runs:
        shape, mult = split_lr(r.cell or r.name)
        if mult != choice[shape]["mult"]:
            continue
        res = results.get(r.id)
        ppl = final_ppl(res)
        lat = (((res or {}).get("latency") or {}).get("seq128") or {}).get("median_ms")
        c = by_cell.setdefault(
            shape,
            {
                "cell": shape,
                "lr_mult": mult,
                "lr_curve": choice[shape]["curve"],
                "axis": r.axis,
                "ppls": [],
                "killed_ppls": [],
                "latency_ms": [],
                "killed": 0,
                "runs": [],
                # the baseline's shape, at whichever LR it ranks
                "is_baseline": r.is_baseline
                or any(x.is_baseline and split_lr(x.cell or x.name)[0] == shape for x in runs),
                "config": json.loads(r.spec_json),
                "plan": json.loads(r.plan_json) if r.plan_json else None,
            },
        )
        c["runs"].append(r.id)
        killed = r.status == "killed"
        c["killed"] += killed
        if isinstance(ppl, (int, float)) and math.isfinite(ppl):
            c["killed_ppls" if killed else "ppls"].append(float(ppl))
        if isinstance(lat, (int, float)) and not (res or {}).get("latency_contended"):
            c["latency_ms"].append(float(lat))  # a contended latency is not a measurement
    out = []
    for c in by_cell.values():
        c["all_killed"] = c["killed"] == len(c["runs"])
        ppls = c["killed_ppls"] if c["all_killed"] else c["ppls"]
        c["ppls"] = ppls
        c["dev_ppl"] = statistics.fmean(ppls) if ppls else math.inf
        c["dev_ppl_std"] = statistics.stdev(ppls) if len(ppls) > 1 else 0.0
        c["latency_ms"] = statistics.fmean(c["latency_ms"]) if c["latency_ms"] else math.inf
        c["note"] = (
            f"ranked on its {len(c['runs']) - c['killed']} finished seed(s); "
            f"{c['killed']} killed (not averaged in)"
            if c["killed"] and not c["all_killed"]
            else None
        )
        out.append(c)
    # cells killed outright last, then by PPL, ties broken by batch-1 latency
    return sorted(out, key=lambda c: (c["all_killed"], c["dev_ppl"], c["latency_ms"]))


def on_axis(axis: str, cell_axis: str | None, is_baseline: bool) -> bool:
    """Whether a cell belongs to an axis's comparison: the axis's own cells and the baseline
    (controls never: they are sanity checks, not candidates)."""
    if cell_axis == "control":
        return False
    return cell_axis in (axis, "baseline") or bool(is_baseline)


def axis_cells(ranked: list[dict], axis: str) -> list[dict]:
    return [c for c in ranked if on_axis(axis, c["axis"], c["is_baseline"])]


def choose(ranked: list[dict], fin: Finalists) -> tuple[list[dict], str]:
    """The promoted cells of one axis, and why."""
    alive = [c for c in ranked if math.isfinite(c["dev_ppl"]) and not c["all_killed"]]
    if not alive:
        return [], "no finished, unkilled cell on this axis"
    k = fin.top_k
    best = alive[0]
    why = f"best dev PPL {best['dev_ppl']:.3f} ({best['cell']})"
    if len(alive) > k:
        nxt = alive[k]
        gap = (nxt["dev_ppl"] - alive[k - 1]["dev_ppl"]) / alive[k - 1]["dev_ppl"]
        spread = (
            fin.use_seed_spread
            and best["dev_ppl_std"] > 0
            and nxt["dev_ppl"] - alive[k - 1]["dev_ppl"] <= best["dev_ppl_std"]
        )
        if gap < fin.thin_margin or spread:
            k += 1
            why += (
                f"; thin margin: {nxt['cell']} is {100 * gap:.2f}% behind "
                f"(threshold {100 * fin.thin_margin:.2f}%"
                + (", within the seed spread" if spread else "")
                + ") so it is promoted too"
            )
        else:
            why += f"; next best {nxt['cell']} is {100 * gap:.2f}% behind"
    return alive[:k], why


def brief(c: dict) -> dict:
    """A ranked cell as recorded in the promotion event (JSON: no infinities)."""
    return {
        "cell": c["cell"],
        "dev_ppl": c["dev_ppl"] if math.isfinite(c["dev_ppl"]) else None,
        "dev_ppl_std": c["dev_ppl_std"],
        "seeds": len(c["ppls"]),
        "killed": c["killed"],
        "note": c.get("note"),
        "latency_ms": c["latency_ms"] if math.isfinite(c["latency_ms"]) else None,
        "lr_mult": c.get("lr_mult", 1.0),
        "lr_curve": c.get("lr_curve"),
    }


def ablation_findings(
    ranked: list[dict], plan: PlanSpec, infeasible: list[dict] | None = None
) -> dict:
    """Does the best embedding share move with vocab size or tying? Groups (vocab x tying) are
    compared on common ground only: the shares that survived in every group compared (the
    planner builds fewer shares in some groups: at 10M, V=16k tied has 0.25/0.35/0.45, V=8k
    tied 0.25/0.35, the untied ones 0.25 alone, and a best picked from different sets "moved"
    by construction). A group with under two shares is left out and named; with under two
    common shares the answer is "undetermined", naming the cells the planner could not build
    (`infeasible`: {cell, reason}). A group's best share counts only when it beats its other
    common shares by more than twice their pooled seed spread; "moves" needs two groups with
    such bests that differ."""
    if not plan.ablation:
        return {}
    groups: dict[str, list[dict]] = {}
    for c in ranked:
        m = c["config"].get("model", {})
        if (
            c["axis"] in ("ablation", "embedding_ratio", "baseline")
            and math.isfinite(c["dev_ppl"])
            and not c["all_killed"]
        ):
            key = f"V={m.get('vocab_size')} {'tied' if m.get('tied_lm_head') else 'untied'}"
            groups.setdefault(key, []).append(c)
    shares = {
        k: sorted({c["config"]["model"]["embedding_ratio"] for c in v}) for k, v in groups.items()
    }
    compared = {k: v for k, v in groups.items() if len(shares[k]) >= 2}
    undetermined = sorted(k for k in groups if k not in compared)
    common = sorted(set.intersection(*(set(shares[k]) for k in compared))) if compared else []
    details = {k: _group_best(v, common) for k, v in compared.items()} if len(common) >= 2 else {}
    best = {k: d["share"] for k, d in details.items()}
    unbuilt = sorted(i["cell"] for i in infeasible or [])
    if len(best) < 2:
        moves = None
        shared = ", ".join(map(str, common)) or "none"
        summary = (
            "undetermined: fewer than two vocab/tying groups share two or more surviving "
            f"embedding shares (common to the groups compared: {shared})"
            if groups
            else "no finished ablation cells"
        )
        if unbuilt:
            summary += f"; the planner could not build {', '.join(unbuilt)}"
    else:
        clear = {k: d["share"] for k, d in details.items() if d["clear"]}
        moves = len(set(clear.values())) > 1
        one_seed = any(d["noise"] is None for d in details.values())
        if moves:
            summary = "the best embedding share moves with vocab size or tying"
        elif len(set(best.values())) > 1:
            summary = (
                "the best embedding shares differ between groups, but "
                + ("with one seed their noise is unknown" if one_seed else "within the seed noise")
                + ": no move shown"
            )
        else:
            summary = "the best embedding share does not move with vocab size or tying"
            summary += " (one seed: its noise unknown)" if one_seed else ""
        summary += f" (compared on the common shares {', '.join(map(str, common))})"
    return {
        "best_embedding_ratio": best,
        "common_shares": common,
        "surviving_shares": shares,
        "groups": details,
        "undetermined_groups": undetermined,
        "infeasible_cells": unbuilt,
        "moves": moves,
        "summary": summary
        + (
            f" (left out, under two shares: {', '.join(undetermined)})"
            if undetermined and best
            else ""
        ),
    }


def _group_best(cells: list[dict], common: list[float]) -> dict:
    """One group's best share on the common shares, and whether it beats each other common
    share by more than twice their pooled seed spread (unknown with one seed: not clear)."""
    on = sorted(
        (c for c in cells if c["config"]["model"]["embedding_ratio"] in common),
        key=lambda c: c["dev_ppl"],
    )
    top = on[0]
    margins = []
    for c in on[1:]:
        # one seed has no spread: its noise is unknown, not zero
        seeds = min(len(top.get("ppls") or []), len(c.get("ppls") or []))
        noise = (
            2 * math.sqrt((top["dev_ppl_std"] ** 2 + c["dev_ppl_std"] ** 2) / 2)
            if seeds >= 2
            else None
        )
        margins.append((c["dev_ppl"] - top["dev_ppl"], noise))
    clear = all(noise is not None and noise > 0 and gap > noise for gap, noise in margins)
    return {
        "share": top["config"]["model"]["embedding_ratio"],
        "dev_ppl": top["dev_ppl"],
        "dev_ppl_std": top["dev_ppl_std"],
        "seeds": len(top.get("ppls", [])),
        "gap_to_next": margins[0][0] if margins else None,
        "noise": margins[0][1] if margins else None,
        "clear": clear,
    }
