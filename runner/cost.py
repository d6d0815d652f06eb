"""GPU-hours and dollars: per attempt, run, phase and sweep; forecasts and budget caps.

Cost = provisioned time x hourly price, for every attempt (preempted ones included): each time
a run leaves an active state, the attempt's wall time since launch is added to the run. One
`Pricing` object, built from the settings at start-up and held by the app, answers every price
question: charging, forecasts and budget checks all use it, so they never disagree. Prices come
from SkyPilot's catalog when asked and readable, else from `runner/prices.yaml` (dated,
a source and region per row; PAX_PRICES overrides). Local CPU runs cost nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from runner.ledger import attempts, cloud_workers
from runner.ledger.models import ACTIVE, FINISHED
from trainer.prep.fetch import atomic_write_text

DEFAULT_TABLE = resources.files("runner") / "prices.yaml"  # shipped with the package
DEFAULT_TOKENS_PER_S = 20_000.0  # forecast fallback before any run has reported a speed
# The GPU a "what would this sweep cost" forecast assumes when the service runs on CPU: the
# class the study's runbook budgets for. Any row of the price table can be asked for instead.
DEFAULT_WHAT_IF = "H100"


def load_table(path: Path | None = None) -> dict:
    p = Path(path) if path else DEFAULT_TABLE
    if not p.is_file():
        raise FileNotFoundError(
            f"price table {p} not found: set PAX_PRICES to a YAML like runner/prices.yaml"
        )
    table = yaml.safe_load(p.read_text())
    if not isinstance(table, dict) or not isinstance(table.get("accelerators"), dict):
        raise ValueError(f"price table {p}: expected `accelerators:` with on_demand/spot prices")
    return table


def catalog_price(accelerator: str, spot: bool, cloud: str = "aws") -> float | None:
    """The cheapest one-GPU instance price in SkyPilot's catalog, or None when SkyPilot is not
    installed or its catalog cannot be read (SkyPilot fetches it over the network)."""
    try:
        from sky import catalog

        types, _ = catalog.get_instance_type_for_accelerator(
            accelerator, 1, use_spot=spot, clouds=cloud
        )
        prices = [catalog.get_hourly_cost(t, spot, None, None, clouds=cloud) for t in types or []]
        return float(min(prices)) if prices else None
    except Exception:  # not installed, offline, unknown GPU: the shipped table answers
        return None


@dataclass
class Pricing:
    """The service's prices: the GPU its own runs use (None = CPU, free), spot or on-demand,
    the table, and the source asked for. Catalog answers are kept on the instance. Every price
    question goes through here: charging an attempt, forecasts, budget caps."""

    accelerator: str | None = None
    spot: bool = False
    table: dict = field(default_factory=load_table)
    source: str = "table"  # or "skypilot": the catalog first, the table when it cannot answer
    catalog: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.accelerator:
            self.price_for(self.accelerator, self.spot)  # an unknown GPU is refused at start-up

    @classmethod
    def from_settings(cls, settings) -> Pricing:
        return cls(
            accelerator=settings.accelerator,
            spot=settings.spot,
            table=load_table(settings.prices),
            source=settings.price_source,
        )

    def price_for(self, accelerator: str | None, spot: bool) -> tuple[float, str]:
        """(USD per GPU-hour, where that price comes from). A GPU without a price is a
        ValueError that says how to add one: a run is never charged $0 by omission."""
        if not accelerator:
            return 0.0, "CPU: free"
        if self.source == "skypilot":
            key = (accelerator, spot)
            if key not in self.catalog:
                self.catalog[key] = catalog_price(accelerator, spot)
            if self.catalog[key] is not None:
                return self.catalog[key], "SkyPilot catalog"
        rows = self.table["accelerators"]
        if accelerator not in rows:
            raise ValueError(
                f"accelerator={accelerator!r} has no price: choose one of {sorted(rows)} or add "
                "it to the price table (PAX_PRICES, a copy of runner/prices.yaml)"
            )
        row = rows[accelerator]
        where = ", ".join(str(row[k]) for k in ("source", "region") if row.get(k))
        return float(row["spot" if spot else "on_demand"]), (
            f"table of {self.table.get('date')}" + (f" ({where})" if where else "")
        )

    def hourly(self, accelerator: str | None, spot: bool) -> float:
        return self.price_for(accelerator, spot)[0]

    def attempt_cost(
        self, seconds: float, accelerator: str | None, spot: bool, gpus: float = 1
    ) -> tuple[float, float]:
        """(GPU-hours, USD) of `seconds` on `gpus` of `accelerator`."""
        if not accelerator:
            return 0.0, 0.0
        hours = max(0.0, seconds) / 3600 * gpus
        return hours, hours * self.hourly(accelerator, spot)

    def charge(self, seconds: float) -> tuple[float, float]:
        """(GPU-hours, USD) of `seconds` on the service's own GPU."""
        return self.attempt_cost(seconds, self.accelerator, self.spot)

    def prior_tokens_per_s(self, accelerator: str | None) -> float:
        row = self.table["accelerators"].get(accelerator or "", {})
        return float(row.get("tokens_per_s") or DEFAULT_TOKENS_PER_S)

    def controller(self) -> tuple[float, float, str]:
        """SkyPilot's jobs controller VM: ($/h, its autostop after the last job, the source)."""
        row = self.table.get("jobs_controller") or {}
        where = ", ".join(str(row[k]) for k in ("source", "region") if row.get(k))
        return (
            float(row.get("usd_per_h", 0.0)),
            float(row.get("autostop_s", 600)),
            f"table of {self.table.get('date')}" + (f" ({where})" if where else ""),
        )

    @property
    def startup_overhead_s(self) -> float:
        return float(self.table.get("startup_overhead_s", 0))

    def forecast(
        self,
        tokens: int,
        *,
        accelerator: str | None,
        spot: bool,
        tokens_per_s: float | None = None,
        jobs: int = 0,
    ) -> dict:
        """What training `tokens` would cost: at `tokens_per_s` (measured), else the table's
        prior for that GPU, plus a start-up overhead per cloud job."""
        tps = tokens_per_s or self.prior_tokens_per_s(accelerator)
        seconds = tokens / tps + jobs * self.startup_overhead_s
        price, source = self.price_for(accelerator, spot)
        hours = seconds / 3600 if accelerator else 0.0
        return {
            "accelerator": accelerator,
            "spot": spot,
            "tokens": tokens,
            "tokens_per_s": tps,
            "tokens_per_s_source": "measured" if tokens_per_s else "prior (price table)",
            "jobs": jobs,
            "startup_overhead_s": jobs * self.startup_overhead_s,
            "gpu_hours": hours,
            "usd": hours * price,
            "price_per_hour": price,
            "price_source": source,
        }

    def forecast_usd(self, tokens: int, tokens_per_s: float) -> float:
        """What `tokens` more cost on the service's own GPU, at `tokens_per_s`."""
        return self.charge(tokens / tokens_per_s)[1]


def measured_tokens_per_s(
    engine: Engine, sweep_id: int | None, accelerator: str | None
) -> float | None:
    """The training speed measured on `accelerator`: in this sweep, else anywhere in the ledger,
    else None (a forecast then uses the table's prior for that GPU)."""
    return attempts.measured_tokens_per_s(
        engine, accelerator=accelerator, sweep_id=sweep_id
    ) or attempts.measured_tokens_per_s(engine, accelerator=accelerator)


def what_if_accelerator(pricing: Pricing, asked: str | None = None) -> str:
    """The GPU a what-if forecast is for: `asked` (a row of the price table), else the
    service's own GPU, else DEFAULT_WHAT_IF (else the table's first row)."""
    rows = pricing.table["accelerators"]
    if asked:
        if asked not in rows:
            raise ValueError(f"accelerator={asked!r} has no price: choose one of {sorted(rows)}")
        return asked
    if pricing.accelerator:
        return pricing.accelerator
    return DEFAULT_WHAT_IF if DEFAULT_WHAT_IF in rows else next(iter(rows))


def usage_hours(attempts: list[dict], t_now: float) -> dict:
    """Compute actually used: wall hours of attempts on CPU, and GPU-hours per GPU (an attempt
    still running counts up to now)."""
    cpu, gpu = 0.0, {}
    for a in attempts:
        secs = a["seconds"] if a["ended_at"] is not None else max(0.0, t_now - a["started_at"])
        if a["accelerator"]:
            gpu[a["accelerator"]] = gpu.get(a["accelerator"], 0.0) + secs / 3600 * a["gpus"]
        else:
            cpu += secs / 3600
    return {"cpu_hours": cpu, "gpu_hours": gpu}


def _what_if(engine, sweep_id, runs, spent, budget, pricing: Pricing, acc: str) -> dict:
    """This sweep on `acc` (spot, as managed jobs run): every phase's tokens at the speed
    measured on that GPU (else its prior), one cloud start-up per run; and which queued runs a
    budget cap would refuse, in the order they would be claimed."""
    tps = measured_tokens_per_s(engine, sweep_id, acc)

    def usd(tokens, jobs):
        return pricing.forecast(tokens, accelerator=acc, spot=True, tokens_per_s=tps, jobs=jobs)

    phases = {}
    for r in runs:
        p = phases.setdefault(r["phase"] or "-", {"runs": 0, "tokens": 0, "left_tokens": 0})
        p["runs"] += 1
        p["tokens"] += r["max_tokens"]
        if r["status"] not in FINISHED:
            p["left_tokens"] += max(0, r["max_tokens"] - r["tokens_seen"])
    for p in phases.values():
        p["usd"] = usd(p["tokens"], p["runs"])["usd"]
        p["remaining_usd"] = usd(p["left_tokens"], 0)["usd"]
    whole = usd(sum(r["max_tokens"] for r in runs), len(runs))
    active = [r for r in runs if r["status"] in ACTIVE]
    pending = sum(max(0, r["max_tokens"] - r["tokens_seen"]) for r in active)
    queued = sorted(
        (r for r in runs if r["status"] == "queued"), key=lambda r: (-r["priority"], r["id"])
    )
    refused, jobs = [], 0
    for r in queued:
        pending += max(0, r["max_tokens"] - r["tokens_seen"])
        jobs += 1
        if budget and spent + usd(pending, jobs)["usd"] > budget:
            refused.append(r["id"])
    remaining = usd(pending, jobs)["usd"]
    return {
        "accelerator": acc,
        "spot": True,
        "price_per_hour": whole["price_per_hour"],
        "price_source": whole["price_source"],
        "tokens_per_s": whole["tokens_per_s"],
        "tokens_per_s_source": whole["tokens_per_s_source"],
        "whole_sweep_usd": whole["usd"],
        "remaining_usd": remaining,
        "phases": phases,
        "budget_share": (spent + remaining) / budget if budget else None,
        "whole_budget_share": whole["usd"] / budget if budget else None,
        "would_refuse": refused,
    }


def sweep_cost(
    engine: Engine,
    sweep_id: int,
    pricing: Pricing | None = None,
    *,
    what_if: str | None = None,
) -> dict:
    """Spent per run, phase and attempt, and the compute actually used; given the pricing, the
    forecast of the whole sweep on the service's own GPU, and what it would cost on a cloud GPU
    (`what_if`, default `what_if_accelerator`) against its budget (one function, so the API,
    COST_SUMMARY.json and the dashboard agree)."""
    runs, budget = attempts.sweep_cost_rows(engine, sweep_id=sweep_id)
    phases: dict[str, dict] = {}
    for r in runs:
        p = phases.setdefault(r["phase"] or "-", {"runs": 0, "gpu_hours": 0.0, "cost_usd": 0.0})
        p["runs"] += 1
        p["gpu_hours"] += r["gpu_hours"]
        p["cost_usd"] += r["cost_usd"]
    spent = sum(r["cost_usd"] for r in runs)
    out = {
        "sweep_id": sweep_id,
        "budget_usd": budget,
        "spent_usd": spent,
        "gpu_hours": sum(r["gpu_hours"] for r in runs),
        "phases": phases,
        "runs": runs,
        "attempts": attempts.attempt_rows(engine, sweep_id=sweep_id),
    }
    out["usage"] = usage_hours(out["attempts"], time.time())
    if pricing is not None:
        out["overhead"] = controller_overhead(out["attempts"], pricing, time.time())
        out["total_usd"] = spent + out["overhead"]["usd"]
        acc = pricing.accelerator
        tps = measured_tokens_per_s(engine, sweep_id, acc)
        total = sum(r["max_tokens"] for r in runs)
        left = sum(
            max(0, r["max_tokens"] - r["tokens_seen"]) for r in runs if r["status"] not in FINISHED
        )
        whole = pricing.forecast(total, accelerator=acc, spot=pricing.spot, tokens_per_s=tps)
        ahead = pricing.forecast(left, accelerator=acc, spot=pricing.spot, tokens_per_s=tps)
        out["pricing"] = {
            "accelerator": acc,
            "spot": pricing.spot,
            "price_per_hour": whole["price_per_hour"],
            "price_source": whole["price_source"],
            "table_date": str(pricing.table.get("date")),
        }
        out["forecast"] = {
            "whole_sweep_usd": whole["usd"],
            "remaining_usd": ahead["usd"],
            "spent_plus_remaining_usd": spent + ahead["usd"],
            "tokens_per_s": whole["tokens_per_s"],
            "tokens_per_s_source": whole["tokens_per_s_source"],
        }
        acc_if = what_if_accelerator(pricing, what_if)
        out["what_if"] = _what_if(engine, sweep_id, runs, spent, budget, pricing, acc_if)
    return out


def controller_overhead(rows: list[dict], pricing: Pricing, t: float) -> dict:
    """SkyPilot's jobs controller, charged to a sweep as overhead: up while any of its managed
    jobs (attempts launched on SkyPilot) lives and for its autostop after. Another sweep's
    jobs at the same time share that VM; each sweep is charged its own stretches. (Warm
    workers' controller is on their own bill: `pax cloud status`.)"""
    usd_h, autostop_s, source = pricing.controller()
    spans = [(a["started_at"], a["ended_at"]) for a in rows if a["launcher"] == "skypilot"]
    seconds = cloud_workers.controller_seconds(spans, t, autostop_s)
    return {
        "what": "SkyPilot's jobs controller VM",
        "seconds": seconds,
        "usd_per_h": usd_h,
        "usd": seconds / 3600 * usd_h,
        "price_source": source,
    }


def budget_refusal(
    engine: Engine, pricing: Pricing, run, accelerator: str | None = None, jobs: int = 0
) -> str | None:
    """Why starting `run` would cross its sweep's budget cap, or None. The forecast: what the
    sweep has spent, plus the tokens still to train in its active runs and in this one, at the
    speed measured on that GPU (or its prior), on `accelerator` (default: the service's own),
    plus `jobs` cloud start-ups."""
    sweep_id = run.sweep_id
    if sweep_id is None:
        return None
    summary = sweep_cost(engine, sweep_id)
    cap = summary["budget_usd"]
    if not cap:
        return None
    extra_tokens = max(0, run.max_tokens - run.tokens_seen)
    pending = extra_tokens + sum(
        max(0, r["max_tokens"] - r["tokens_seen"]) for r in summary["runs"] if r["status"] in ACTIVE
    )
    acc = accelerator if accelerator is not None else pricing.accelerator
    spot = pricing.spot if accelerator is None else True
    overhead = controller_overhead(summary["attempts"], pricing, time.time())["usd"]
    spent = summary["spent_usd"] + overhead  # the jobs controller's share too
    ahead = pricing.forecast(
        pending,
        accelerator=acc,
        spot=spot,
        tokens_per_s=measured_tokens_per_s(engine, sweep_id, acc),
        jobs=jobs,
    )["usd"]
    if spent + ahead > cap:
        return (
            f"budget: sweep {sweep_id} has spent ${spent:.2f}; with {extra_tokens:,} more "
            f"tokens and the runs in flight it would reach ${spent + ahead:.2f}, over its cap "
            f"${cap:.2f}. Raise budget_usd or shorten the runs."
        )
    return None


def write_summary(
    engine: Engine, sweep_id: int, out_dir: Path, pricing: Pricing | None = None
) -> Path:
    """COST_SUMMARY.json, written atomically (a temporary name, then a rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "COST_SUMMARY.json"
    atomic_write_text(path, json.dumps(sweep_cost(engine, sweep_id, pricing), indent=2) + "\n")
    return path
