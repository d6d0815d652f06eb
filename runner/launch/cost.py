"""GPU-hours and dollars: per attempt, run, phase and sweep; forecasts and budget caps.

Cost = provisioned time x hourly price, for every attempt (preempted ones included): each time
a run leaves an active state, the attempt's wall time since launch is added to the run. One
`Pricing` object, built from the settings at start-up and held by the app, answers every price
question: charging, forecasts and budget checks all use it, so they never disagree. Prices come
from SkyPilot's catalog when asked and readable, else from `configs/prices.yaml` (dated;
PAX_PRICES overrides). Local CPU runs cost nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from runner.ledger import queries
from runner.ledger.models import ACTIVE

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TABLE = ROOT / "configs" / "prices.yaml"
DEFAULT_TOKENS_PER_S = 20_000.0  # forecast fallback before any run has reported a speed


def load_table(path: Path | None = None) -> dict:
    p = Path(path) if path else DEFAULT_TABLE
    if not p.is_file():
        raise FileNotFoundError(
            f"price table {p} not found: set PAX_PRICES to a YAML like configs/prices.yaml"
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
    """The service's prices: the GPU its runs use (None = CPU, free), spot or on-demand, the
    table, and the source asked for. Catalog answers are kept on the instance."""

    accelerator: str | None = None
    spot: bool = False
    table: dict = field(default_factory=load_table)
    source: str = "table"  # or "skypilot": the catalog first, the table when it cannot answer
    catalog: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.accelerator:
            self.hourly(self.accelerator, self.spot)  # an unknown GPU is refused at start-up

    @classmethod
    def from_settings(cls, settings) -> Pricing:
        return cls(
            accelerator=settings.accelerator,
            spot=settings.spot,
            table=load_table(settings.prices),
            source=settings.price_source,
        )

    def hourly(self, accelerator: str | None, spot: bool) -> float:
        """USD per GPU-hour."""
        if not accelerator:
            return 0.0
        if self.source == "skypilot":
            key = (accelerator, spot)
            if key not in self.catalog:
                self.catalog[key] = catalog_price(accelerator, spot)
            if self.catalog[key] is not None:
                return self.catalog[key]
        prices = self.table["accelerators"]
        if accelerator not in prices:
            raise ValueError(
                f"accelerator={accelerator!r} has no price: choose one of "
                f"{sorted(prices)} or add it to the price table (PAX_PRICES)"
            )
        return float(prices[accelerator]["spot" if spot else "on_demand"])

    def attempt_cost(
        self, seconds: float, accelerator: str | None, spot: bool, gpus: int = 1
    ) -> tuple[float, float]:
        """(GPU-hours, USD) of one attempt on `gpus` of `accelerator`."""
        if not accelerator:
            return 0.0, 0.0
        hours = max(0.0, seconds) / 3600 * gpus
        return hours, hours * self.hourly(accelerator, spot)

    def charge(self, seconds: float) -> tuple[float, float]:
        """(GPU-hours, USD) of an attempt that ran `seconds` on the service's GPU."""
        return self.attempt_cost(seconds, self.accelerator, self.spot)

    def forecast_usd(self, tokens: int, tokens_per_s: float) -> float:
        return self.charge(tokens / tokens_per_s)[1]


def measured_tokens_per_s(engine: Engine, sweep_id: int) -> float:
    return (
        queries.mean_latest(engine, sweep_id=sweep_id, name="train/tokens_per_s")
        or DEFAULT_TOKENS_PER_S
    )


def sweep_cost(engine: Engine, sweep_id: int) -> dict:
    runs, budget = queries.sweep_cost_rows(engine, sweep_id=sweep_id)
    phases: dict[str, dict] = {}
    for r in runs:
        p = phases.setdefault(r["phase"] or "-", {"runs": 0, "gpu_hours": 0.0, "cost_usd": 0.0})
        p["runs"] += 1
        p["gpu_hours"] += r["gpu_hours"]
        p["cost_usd"] += r["cost_usd"]
    return {
        "sweep_id": sweep_id,
        "budget_usd": budget,
        "spent_usd": sum(r["cost_usd"] for r in runs),
        "gpu_hours": sum(r["gpu_hours"] for r in runs),
        "phases": phases,
        "runs": runs,
    }


def budget_refusal(engine: Engine, pricing: Pricing, run) -> str | None:
    """Why starting `run` would cross its sweep's budget cap, or None. The forecast: what the
    sweep has spent, plus the tokens still to train in its active runs and in this one, at the
    sweep's measured tokens per second and the service's price."""
    sweep_id = run.sweep_id
    extra_tokens = max(0, run.max_tokens - run.tokens_seen)
    if sweep_id is None:
        return None
    summary = sweep_cost(engine, sweep_id)
    cap = summary["budget_usd"]
    if not cap:
        return None
    pending = extra_tokens + sum(
        max(0, r["max_tokens"] - r["tokens_seen"]) for r in summary["runs"] if r["status"] in ACTIVE
    )
    spent = summary["spent_usd"]
    ahead = pricing.forecast_usd(pending, measured_tokens_per_s(engine, sweep_id))
    if spent + ahead > cap:
        return (
            f"budget: sweep {sweep_id} has spent ${spent:.2f}; with {extra_tokens:,} more "
            f"tokens and the runs in flight it would reach ${spent + ahead:.2f}, over its cap "
            f"${cap:.2f}. Raise budget_usd or shorten the runs."
        )
    return None


def write_summary(engine: Engine, sweep_id: int, out_dir: Path) -> Path:
    """COST_SUMMARY.json, written atomically (a temporary name, then a rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "COST_SUMMARY.json"
    tmp = out_dir / f".COST_SUMMARY.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(sweep_cost(engine, sweep_id), indent=2) + "\n")
    os.replace(tmp, path)
    return path
