"""What the dashboard reads from the ledger (read-only; raw SQL where a page lists many rows)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

PAGE = 200
STATUSES = ("queued", "launching", "running", "succeeded", "failed", "killed", "cancelled", "lost")


def runs_page(
    engine: Engine,
    *,
    sweep: int | None = None,
    phase: str | None = None,
    status: str | None = None,
    limit: int = PAGE,
) -> tuple[list[dict], int]:
    where, args = [], []
    if sweep is not None:
        where.append("r.sweep_id = ?")
        args.append(sweep)
    if phase:
        where.append("r.phase = ?")
        args.append(phase)
    if status:
        where.append("r.status = ?")
        args.append(status)
    w = ("WHERE " + " AND ".join(where)) if where else ""
    with engine.connect() as conn:
        total = conn.exec_driver_sql(f"SELECT COUNT(*) FROM runs r {w}", tuple(args)).scalar()
        rows = conn.exec_driver_sql(
            "SELECT r.id, r.name, r.cell, r.sweep_id, r.phase, r.status, r.tokens_seen, "
            "r.max_tokens, r.cost_usd, r.gpu_hours, r.attempt, r.updated_at, "
            "(SELECT value FROM latest_metrics WHERE run_id = r.id AND name = 'dev/word_ppl'), "
            "(SELECT value FROM latest_metrics WHERE run_id = r.id AND name = "
            "'train/tokens_per_s'), "
            "(SELECT value FROM latest_metrics WHERE run_id = r.id AND name = 'train/loss') "
            f"FROM runs r {w} ORDER BY r.id DESC LIMIT ?",
            (*args, limit),
        ).all()
    out = []
    for rid, name, cell, sw, ph, st, seen, mx, cost, gpu_h, attempt, upd, ppl, tps, loss in rows:
        progress = min(1.0, seen / mx) if mx else 0.0
        eta = (mx - seen) / tps if tps and st == "running" and mx > seen else None
        out.append(
            {
                "id": rid,
                "name": name,
                "cell": cell or name,
                "sweep_id": sw,
                "phase": ph,
                "status": st,
                "tokens_seen": seen,
                "max_tokens": mx,
                "progress": progress,
                "tokens_per_s": tps,
                "eta_s": eta,
                "dev_ppl": ppl,
                "train_loss": loss,
                "cost_usd": cost,
                "gpu_hours": gpu_h,
                "attempt": attempt,
                "updated": upd,
            }
        )
    return out, int(total)


def sweeps(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT s.id, s.name, s.kind, s.phase, s.status, s.budget_usd, s.report_dir, "
            "COUNT(r.id), SUM(r.status IN ('succeeded','killed','failed','cancelled')), "
            "SUM(r.status = 'running'), SUM(r.status = 'killed'), COALESCE(SUM(r.cost_usd), 0), "
            "COALESCE(SUM(r.gpu_hours), 0) FROM sweeps s LEFT JOIN runs r ON r.sweep_id = s.id "
            "GROUP BY s.id ORDER BY s.id DESC"
        ).all()
    return [
        {
            "id": r[0],
            "name": r[1],
            "kind": r[2],
            "phase": r[3],
            "status": r[4],
            "budget_usd": r[5],
            "report_dir": r[6],
            "runs": r[7],
            "finished": r[8] or 0,
            "running": r[9] or 0,
            "killed": r[10] or 0,
            "cost_usd": r[11],
            "gpu_hours": r[12],
        }
        for r in rows
    ]


def run_detail(engine: Engine, run_id: int) -> dict | None:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT r.id, r.name, r.cell, r.sweep_id, r.phase, r.status, r.spec_json, "
            "r.tokens_seen, r.max_tokens, r.attempt, r.launcher, r.backend_id, r.run_dir, "
            "r.created_at, r.started_at, r.finished_at, r.last_heartbeat, r.exit_reason, "
            "r.is_baseline, r.cost_usd, r.gpu_hours, res.metrics_json FROM runs r LEFT JOIN "
            "results res ON res.run_id = r.id WHERE r.id = ?",
            (run_id,),
        ).first()
        if row is None:
            return None
        latest = dict(
            conn.exec_driver_sql(
                "SELECT name, value FROM latest_metrics WHERE run_id = ?", (run_id,)
            ).all()
        )
    keys = (
        "id",
        "name",
        "cell",
        "sweep_id",
        "phase",
        "status",
        "spec_json",
        "tokens_seen",
        "max_tokens",
        "attempt",
        "launcher",
        "backend_id",
        "run_dir",
        "created_at",
        "started_at",
        "finished_at",
        "last_heartbeat",
        "exit_reason",
        "is_baseline",
        "cost_usd",
        "gpu_hours",
        "metrics_json",
    )
    d: dict[str, Any] = dict(zip(keys, row, strict=True))
    d["config"] = json.loads(d.pop("spec_json"))
    mj = d.pop("metrics_json")
    d["result"] = json.loads(mj) if mj else None
    d["latest"] = latest
    return d


def baseline_of(engine: Engine, run: dict) -> int | None:
    if run["sweep_id"] is None or run["is_baseline"]:
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT id FROM runs WHERE sweep_id = ? AND phase IS ? AND is_baseline ORDER BY id "
            "LIMIT 1",
            (run["sweep_id"], run["phase"]),
        ).first()
    return row[0] if row else None


def series(
    engine: Engine, run_id: int, name: str, max_points: int = 400
) -> list[tuple[float, float]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT tokens, value FROM metric_points WHERE run_id = ? AND name = ? ORDER BY step",
            (run_id, name),
        ).all()
    if len(rows) > max_points:
        stride = len(rows) / max_points
        rows = [rows[int(i * stride)] for i in range(max_points)] + [rows[-1]]
    return [(float(t), float(v)) for t, v in rows]


def version(engine: Engine, run_id: int) -> tuple:
    """Changes whenever a new point or a state change arrives: the chart cache key."""
    with engine.connect() as conn:
        return tuple(
            conn.exec_driver_sql(
                "SELECT (SELECT COALESCE(MAX(step), -1) FROM latest_metrics WHERE run_id = ?), "
                "(SELECT COUNT(*) FROM latest_metrics WHERE run_id = ?), "
                "(SELECT updated_at FROM runs WHERE id = ?)",
                (run_id, run_id, run_id),
            ).first()
        )


def events(engine: Engine, *, run_id: int | None = None, sweep_id: int | None = None) -> list[dict]:
    col, val = ("run_id", run_id) if run_id is not None else ("sweep_id", sweep_id)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT id, run_id, time, kind, from_status, to_status, "
            f"reason, data_json FROM events WHERE {col} = ? ORDER BY id",
            (val,),
        ).all()
    return [
        {
            "id": r[0],
            "run_id": r[1],
            "time": r[2],
            "kind": r[3],
            "from": r[4],
            "to": r[5],
            "reason": r[6],
            "data": json.loads(r[7]) if r[7] else None,
        }
        for r in rows
    ]


def cost_summary(engine: Engine) -> dict:
    with engine.connect() as conn:
        by_run = conn.exec_driver_sql(
            "SELECT id, name, sweep_id, phase, status, gpu_hours, cost_usd FROM runs "
            "ORDER BY cost_usd DESC, id DESC LIMIT 500"
        ).all()
        by_phase = conn.exec_driver_sql(
            "SELECT sweep_id, COALESCE(phase, '-'), COUNT(*), SUM(gpu_hours), SUM(cost_usd) "
            "FROM runs GROUP BY sweep_id, phase ORDER BY sweep_id, phase"
        ).all()
        total = conn.exec_driver_sql(
            "SELECT COUNT(*), COALESCE(SUM(gpu_hours), 0), COALESCE(SUM(cost_usd), 0) FROM runs"
        ).first()
    return {
        "runs": [
            dict(
                zip(
                    ("id", "name", "sweep_id", "phase", "status", "gpu_hours", "cost_usd"),
                    r,
                    strict=True,
                )
            )
            for r in by_run
        ],
        "phases": [
            dict(zip(("sweep_id", "phase", "runs", "gpu_hours", "cost_usd"), r, strict=True))
            for r in by_phase
        ],
        "total": {"runs": total[0], "gpu_hours": total[1], "cost_usd": total[2]},
    }
