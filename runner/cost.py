"""GPU-hours and dollars: per attempt, run, phase and sweep; forecasts and budget caps.

Cost = provisioned time x hourly price, for every attempt (preempted ones included): each time
a run leaves an active state, the attempt's wall time since launch is added to the run. Prices
come from SkyPilot's catalog when it is installed and knows the accelerator, else from
`configs/prices.yaml` (dated; override with PAX_PRICES). Local CPU runs cost nothing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENS_PER_S = 20_000.0  # forecast fallback before any run has reported a speed


@lru_cache(maxsize=8)
def price_table(path: str | None = None) -> dict:
    p = Path(path) if path else ROOT / "configs" / "prices.yaml"
    if not p.is_file():
        raise FileNotFoundError(
            f"price table {p} not found: set PAX_PRICES to a YAML like configs/prices.yaml"
        )
    return yaml.safe_load(p.read_text())


@lru_cache(maxsize=64)
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


def hourly_price(
    accelerator: str | None, spot: bool, prices_path: str | None = None, source: str = "table"
) -> float:
    """USD per GPU-hour: SkyPilot's catalog when asked (source="skypilot") and readable, else
    the shipped, dated table."""
    if not accelerator:
        return 0.0
    if source == "skypilot":
        price = catalog_price(accelerator, spot)
        if price is not None:
            return price
    table = price_table(prices_path)["accelerators"]
    if accelerator not in table:
        raise ValueError(
            f"accelerator={accelerator!r} has no price: choose one of "
            f"{sorted(table)} or add it to the price table (PAX_PRICES)"
        )
    return float(table[accelerator]["spot" if spot else "on_demand"])


def attempt_cost(
    seconds: float,
    accelerator: str | None,
    spot: bool,
    gpus: int = 1,
    prices_path: str | None = None,
    source: str = "table",
) -> tuple[float, float]:
    """(GPU-hours, USD) of one attempt."""
    if not accelerator:
        return 0.0, 0.0
    hours = max(0.0, seconds) / 3600 * gpus
    return hours, hours * hourly_price(accelerator, spot, prices_path, source)


def measured_tokens_per_s(engine: Engine, sweep_id: int) -> float:
    with engine.connect() as conn:
        v = conn.exec_driver_sql(
            "SELECT AVG(l.value) FROM latest_metrics l JOIN runs r ON r.id = l.run_id "
            "WHERE r.sweep_id = ? AND l.name = 'train/tokens_per_s'",
            (sweep_id,),
        ).scalar()
    return float(v) if v else DEFAULT_TOKENS_PER_S


def sweep_cost(engine: Engine, sweep_id: int) -> dict:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, name, phase, status, attempt, gpu_hours, cost_usd, max_tokens, "
            "tokens_seen FROM runs WHERE sweep_id = ? ORDER BY id",
            (sweep_id,),
        ).all()
        budget = conn.exec_driver_sql(
            "SELECT budget_usd FROM sweeps WHERE id = ?", (sweep_id,)
        ).scalar()
    runs = [
        dict(
            zip(
                (
                    "id",
                    "name",
                    "phase",
                    "status",
                    "attempts",
                    "gpu_hours",
                    "cost_usd",
                    "max_tokens",
                    "tokens_seen",
                ),
                r,
                strict=True,
            )
        )
        for r in rows
    ]
    phases: dict[str, dict] = {}
    for r in runs:
        p = phases.setdefault(r["phase"] or "-", {"runs": 0, "gpu_hours": 0.0, "cost_usd": 0.0})
        p["runs"] += 1
        p["gpu_hours"] += r["gpu_hours"]
        p["cost_usd"] += r["cost_usd"]
    spent = sum(r["cost_usd"] for r in runs)
    return {
        "sweep_id": sweep_id,
        "budget_usd": budget,
        "spent_usd": spent,
        "gpu_hours": sum(r["gpu_hours"] for r in runs),
        "phases": phases,
        "runs": runs,
    }


def forecast_usd(
    engine: Engine,
    sweep_id: int,
    tokens: int,
    accelerator: str | None,
    spot: bool,
    prices_path: str | None = None,
) -> float:
    """Tokens to train / measured tokens per second x price."""
    tps = measured_tokens_per_s(engine, sweep_id)
    return attempt_cost(tokens / tps, accelerator, spot, 1, prices_path)[1]


def write_summary(engine: Engine, sweep_id: int, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "COST_SUMMARY.json"
    path.write_text(json.dumps(sweep_cost(engine, sweep_id), indent=2) + "\n")
    return path


# The service's pricing, set once at start-up (create_app): which GPU its runs use.
PRICING = {"accelerator": None, "spot": False, "prices": None, "source": "table"}


def configure(
    accelerator: str | None, spot: bool, prices: str | None, source: str = "table"
) -> None:
    if accelerator:
        hourly_price(accelerator, spot, prices)  # refuse an unknown accelerator at start-up
    PRICING.update(accelerator=accelerator, spot=spot, prices=prices, source=source)


def charge(seconds: float) -> tuple[float, float]:
    """(GPU-hours, USD) of an attempt that ran `seconds`, at the service's pricing."""
    p = PRICING
    return attempt_cost(seconds, p["accelerator"], p["spot"], 1, p["prices"], p["source"])
