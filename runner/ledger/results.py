"""Results: each run's final metrics.json, as the trainer posted it or left it in its folder.
Stored once per run (a later document replaces it) once it passes its checks
(runner.ledger.result_doc); read back through `showable`, so a document stored before those
checks can't break a reader. The run's status follows its exit, never this document."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from runner.ledger.attempts import runs_sharing
from runner.ledger.db import lock_run, write_session
from runner.ledger.errors import NotFound
from runner.ledger.events import now
from runner.ledger.models import Result, Run
from runner.ledger.result_doc import check_result, showable

R = Run.__table__.c
RES = Result.__table__.c


def store_result(engine: Engine, *, run_id: int, metrics: dict[str, Any]) -> Run:
    """Keep the run's final metrics.json (replacing an earlier one), once it passes the
    document's checks (ValueError naming what is wrong: nothing is stored)."""
    check_result(metrics)
    sample = bool((metrics.get("provenance") or {}).get("sample"))
    with write_session(engine) as s:
        r = lock_run(s, run_id)
        if r is None:
            raise NotFound(f"run {run_id} does not exist")
        metrics = _with_sharing(s, r, metrics)
        doc = json.dumps(metrics, allow_nan=False)
        existing = s.get(Result, run_id)
        if existing is None:
            s.add(Result(run_id=run_id, metrics_json=doc, sample=sample, created_at=now()))
        else:
            existing.metrics_json, existing.sample = doc, sample
            s.add(existing)
        tokens = (metrics.get("training") or {}).get("tokens_seen")
        if isinstance(tokens, int) and tokens > r.tokens_seen:
            r.tokens_seen = tokens
            s.add(r)
        s.commit()
        s.refresh(r)
        return r


def _with_sharing(s, run, metrics: dict) -> dict:
    """The trainer cannot see other runs on its GPU; the ledger can: the runs that had an
    attempt on the run's device while its latency was measured. Any makes it contended."""
    w = metrics.get("latency_window") or {}
    if not isinstance(w.get("start"), (int, float)) or not isinstance(w.get("end"), (int, float)):
        return metrics
    n = runs_sharing(s, run, float(w["start"]), float(w["end"]))
    if n is None:
        return metrics
    return {
        **metrics,
        "latency_shared_runs": n,
        "latency_contended": bool(metrics.get("latency_contended")) or n > 0,
    }


def get_result(engine: Engine, *, run_id: int) -> dict | None:
    return results_for(engine, run_ids=[run_id]).get(run_id)


def results_for(engine: Engine, *, run_ids: list[int]) -> dict[int, dict]:
    if not run_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(RES.run_id, RES.metrics_json).where(RES.run_id.in_(run_ids))
        ).all()
    return {rid: showable(json.loads(doc)) for rid, doc in rows}


def results_rows(
    engine: Engine,
    *,
    sweep_id: int | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Every run (of a sweep, or all) with its spec, plan and final metrics document, by id;
    `after_id`/`limit` page through them (a streamed export holds one page at a time)."""
    q = (
        select(
            R.id,
            R.name,
            R.sweep_id,
            R.phase,
            R.status,
            R.spec_json,
            R.plan_json,
            R.tokens_seen,
            R.gpu_hours,
            R.cost_usd,
            R.exit_reason,
            R.run_dir,
            R.cell,
            R.axis,
            R.is_baseline,
            RES.metrics_json,
        )
        .select_from(Run.__table__.outerjoin(Result.__table__, RES.run_id == R.id))
        .order_by(R.id)
    )
    if sweep_id is not None:
        q = q.where(R.sweep_id == sweep_id)
    if after_id is not None:
        q = q.where(R.id > after_id)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["config"] = json.loads(d.pop("spec_json"))
        plan = d.pop("plan_json")
        d["plan"] = json.loads(plan) if plan else None
        mj = d.pop("metrics_json")
        d["metrics"] = showable(json.loads(mj)) if mj else None
        out.append(d)
    return out


def has_sample_results(engine: Engine, *, sweep_id: int | None = None) -> bool:
    """Whether any result (of the ledger, or of one sweep) was made from sample data."""
    q = select(RES.run_id).where(RES.sample.is_(True))
    if sweep_id is not None:
        q = q.join(Run.__table__, R.id == RES.run_id).where(R.sweep_id == sweep_id)
    with engine.connect() as conn:
        return conn.execute(q.limit(1)).first() is not None
