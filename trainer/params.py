"""Parameter planner: turn a budget split into a concrete Llama-style architecture.

The study asks "how should a fixed budget be spent?", so the planner works backwards from the
request (total, embedding share, SwiGLU expansion, vocab, tying) to integers (d_model, n_layers,
n_heads, ffn_hidden) whose exact parameter count lands inside fixed tolerances.

Parameter count of the model in `trainer/model.py` (no biases, n_kv_heads == n_heads):
    embedding  = V * d
    attention  = L * 4 * d * d          (q, k, v, o)
    ffn        = L * 3 * d * f          (SwiGLU: gate, up, down)
    norm       = L * 2 * d + d          (two RMSNorms per block + the final one)
    head       = V * d if untied else 0 (a tied head reuses the embedding tensor)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

TOTAL_TOLERANCE = 0.005  # +-0.5% of the requested total
RATIO_TOLERANCE = 0.02  # +-0.02 absolute on the embedding share
GLU_TOLERANCE = 0.05  # +-5% relative on the SwiGLU expansion
MAX_LAYERS = 64
TARGET_HEAD_DIM = 32  # ~32-64 is usual for models this small; heads do not change the count


@dataclass(frozen=True)
class PlanRequest:
    total_params: int
    embedding_ratio: float
    glu_expansion: float
    vocab_size: int
    tied_lm_head: bool = True

    def __post_init__(self) -> None:
        if self.total_params < 10_000:
            raise ValueError(f"total_params={self.total_params}: must be >= 10,000")
        if not 0.01 <= self.embedding_ratio <= 0.95:
            raise ValueError(f"embedding_ratio={self.embedding_ratio}: must be in [0.01, 0.95]")
        if not 0.5 <= self.glu_expansion <= 16:
            raise ValueError(f"glu_expansion={self.glu_expansion}: must be in [0.5, 16]")
        if not 16 <= self.vocab_size <= 65_535:
            raise ValueError(
                f"vocab_size={self.vocab_size}: must be in [16, 65535] (token files are uint16)"
            )


@dataclass(frozen=True)
class Plan:
    """A solved architecture and its exact per-component parameter count."""

    d_model: int
    n_layers: int
    n_heads: int
    ffn_hidden: int
    vocab_size: int
    tied_lm_head: bool
    embedding: int
    attention: int
    ffn: int
    norm: int
    head: int
    total: int
    embedding_ratio: float  # achieved: embedding / total
    glu_expansion: float  # achieved: ffn_hidden / d_model
    requested: dict

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        d = asdict(self)
        d["head_dim"] = self.head_dim
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def count_params(
    *, d_model: int, n_layers: int, ffn_hidden: int, vocab_size: int, tied_lm_head: bool
) -> dict[str, int]:
    """Analytic count per component; must equal sum(p.numel()) of the built model."""
    d, L, f, V = d_model, n_layers, ffn_hidden, vocab_size
    counts = {
        "embedding": V * d,
        "attention": L * 4 * d * d,
        "ffn": L * 3 * d * f,
        "norm": L * 2 * d + d,
        "head": 0 if tied_lm_head else V * d,
    }
    counts["total"] = sum(counts.values())
    return counts


def _pick_heads(d_model: int) -> int:
    """Number of heads whose head_dim is a multiple of 8 and closest (in log) to TARGET_HEAD_DIM."""
    dims = [h for h in range(8, d_model + 1, 8) if d_model % h == 0]
    best = min(dims, key=lambda h: abs(math.log(h / TARGET_HEAD_DIM)))
    return d_model // best


def _build(req: PlanRequest, d: int, L: int, f: int) -> Plan:
    c = count_params(
        d_model=d,
        n_layers=L,
        ffn_hidden=f,
        vocab_size=req.vocab_size,
        tied_lm_head=req.tied_lm_head,
    )
    return Plan(
        d_model=d,
        n_layers=L,
        n_heads=_pick_heads(d),
        ffn_hidden=f,
        vocab_size=req.vocab_size,
        tied_lm_head=req.tied_lm_head,
        embedding=c["embedding"],
        attention=c["attention"],
        ffn=c["ffn"],
        norm=c["norm"],
        head=c["head"],
        total=c["total"],
        embedding_ratio=c["embedding"] / c["total"],
        glu_expansion=f / d,
        requested=asdict(req),
    )


def _errors(req: PlanRequest, p: Plan) -> tuple[float, float, float]:
    """Deviations as fractions of their tolerance (<= 1 means inside)."""
    return (
        abs(p.total - req.total_params) / req.total_params / TOTAL_TOLERANCE,
        abs(p.embedding_ratio - req.embedding_ratio) / RATIO_TOLERANCE,
        abs(p.glu_expansion / req.glu_expansion - 1) / GLU_TOLERANCE,
    )


def _candidates(req: PlanRequest):
    """Every (d, L, f) worth checking: d a multiple of 8 near the requested embedding share, and
    for each depth the FFN width that makes the total come out exact."""
    V, T = req.vocab_size, req.total_params
    lo = max(8, int((req.embedding_ratio - 2 * RATIO_TOLERANCE) * T / V) // 8 * 8)
    hi = int((req.embedding_ratio + 2 * RATIO_TOLERANCE) * T / V) // 8 * 8 + 8
    head = 0 if req.tied_lm_head else 1
    for d in range(lo, hi + 1, 8):
        fixed_outside_layers = V * d * (1 + head) + d
        for L in range(1, MAX_LAYERS + 1):
            per_layer = (T - fixed_outside_layers) / L - 4 * d * d - 2 * d
            f_exact = per_layer / (3 * d)
            if f_exact < 1:
                break
            # 1) a width that is a multiple of 8 (friendlier to kernels) 2) the exact integer
            yield d, L, max(8, round(f_exact / 8) * 8)
            yield d, L, max(1, round(f_exact))


def plan(
    total_params: int,
    embedding_ratio: float,
    glu_expansion: float,
    vocab_size: int,
    tied_lm_head: bool = True,
) -> Plan:
    """Solve the architecture; raise ValueError naming the closest plan when none fits."""
    req = PlanRequest(
        int(total_params),
        float(embedding_ratio),
        float(glu_expansion),
        int(vocab_size),
        bool(tied_lm_head),
    )
    best: tuple[float, Plan] | None = None
    closest: tuple[float, Plan] | None = None
    for d, L, f in _candidates(req):
        p = _build(req, d, L, f)
        errs = _errors(req, p)
        # Among feasible plans prefer the closest to the request, then a head_dim near the
        # target (d=152 only splits into 19x8 or 1x152), then FFN widths that are multiples of 8.
        head_shape = math.log2(p.head_dim / TARGET_HEAD_DIM) ** 2
        score = sum(e * e for e in errs) + 0.5 * head_shape + (0.01 if f % 8 else 0.0)
        if max(errs) <= 1.0:
            if best is None or score < best[0]:
                best = (score, p)
        elif closest is None or max(errs) < closest[0]:
            closest = (max(errs), p)
    if best is not None:
        return best[1]
    if closest is None:
        raise ValueError(
            f"no architecture exists for total_params={req.total_params}, vocab_size={vocab_size}, "
            f"embedding_ratio={embedding_ratio}: the embedding table alone exceeds the budget; "
            "lower embedding_ratio or vocab_size, or raise total_params"
        )
    p = closest[1]
    e_total, e_ratio, e_glu = _errors(req, p)
    misses = []
    if e_total > 1:
        misses.append(
            f"total {p.total:,} is {100 * (p.total / req.total_params - 1):+.2f}% "
            f"(allowed +-{100 * TOTAL_TOLERANCE}%)"
        )
    if e_ratio > 1:
        misses.append(
            f"embedding_ratio {p.embedding_ratio:.3f} vs {req.embedding_ratio} "
            f"(allowed +-{RATIO_TOLERANCE})"
        )
    if e_glu > 1:
        misses.append(
            f"glu_expansion {p.glu_expansion:.3f} vs {req.glu_expansion} "
            f"(allowed +-{100 * GLU_TOLERANCE:.0f}%)"
        )
    raise ValueError(
        f"no plan within tolerances for total_params={req.total_params:,}, "
        f"embedding_ratio={req.embedding_ratio}, glu_expansion={req.glu_expansion}, "
        f"vocab_size={req.vocab_size}, tied_lm_head={req.tied_lm_head}. Closest plan: "
        f"d_model={p.d_model}, n_layers={p.n_layers}, ffn_hidden={p.ffn_hidden}, "
        f"total={p.total:,}, "
        f"embedding_ratio={p.embedding_ratio:.3f}, glu_expansion={p.glu_expansion:.3f}; "
        f"out of tolerance: {'; '.join(misses)}. Move embedding_ratio or glu_expansion toward "
        "these values, or change vocab_size/total_params."
    )


def parse_count(text: str | int) -> int:
    """'10M' -> 10_000_000, '16k' -> 16_000, '2.5M' -> 2_500_000, 12345 -> 12345."""
    if isinstance(text, int):
        return text
    s = str(text).strip().replace("_", "").replace(",", "")
    mult = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}.get(s[-1:].lower(), 1)
    num = s[:-1] if mult != 1 else s
    try:
        return int(round(float(num) * mult))
    except (ValueError, OverflowError):  # not a number, or nan/inf
        raise ValueError(
            f"cannot read {text!r} as a count; use e.g. 10M, 16k or 10000000"
        ) from None


def param_table(p: Plan) -> list[tuple[str, int, float]]:
    rows = [(name, getattr(p, name)) for name in ("embedding", "attention", "ffn", "norm", "head")]
    return [(name, n, n / p.total) for name, n in rows] + [("total", p.total, 1.0)]


def print_param_table(p: Plan, console=None) -> None:
    """Pretty table of the plan (rich), one row per component plus the architecture."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(
        title=(
            f"d_model={p.d_model}  layers={p.n_layers}  heads={p.n_heads} "
            f"(head_dim {p.head_dim})  ffn_hidden={p.ffn_hidden}  V={p.vocab_size}  "
            f"{'tied' if p.tied_lm_head else 'untied'} head"
        )
    )
    t.add_column("component")
    t.add_column("params", justify="right")
    t.add_column("share", justify="right")
    for name, n, share in param_table(p):
        t.add_row(name, f"{n:,}", f"{100 * share:.2f}%")
    console.print(t)
    r = p.requested
    console.print(
        f"achieved embedding_ratio {p.embedding_ratio:.4f} (requested {r['embedding_ratio']}), "
        f"glu_expansion {p.glu_expansion:.4f} (requested {r['glu_expansion']}), "
        f"total {p.total:,} ({100 * (p.total / r['total_params'] - 1):+.3f}% of "
        f"{r['total_params']:,})"
    )


def grid_table(total: int = 10_000_000) -> str:
    """The study's grid as a Markdown table: V {16k, 8k} x tied/untied x embedding share
    {0.25, 0.35, 0.45} x SwiGLU expansion {2, 2.66, 3, 4}; the baseline in bold."""
    lines = [
        "| V | head | emb. share | GLU | d_model | layers | heads | FFN width | total | "
        "achieved emb. | achieved GLU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for V, tied in ((16000, True), (16000, False), (8000, True), (8000, False)):
        head = "tied" if tied else "untied"
        for r in (0.25, 0.35, 0.45):
            for g in (2.0, 2.66, 3.0, 4.0):
                try:
                    p = plan(total, r, g, V, tied)
                except ValueError:
                    lines.append(f"| {V // 1000}k | {head} | {r} | {g} | refused | | | | | | |")
                    continue
                cells = [
                    f"{V // 1000}k",
                    head,
                    r,
                    g,
                    p.d_model,
                    p.n_layers,
                    p.n_heads,
                    p.ffn_hidden,
                    f"{p.total:,}",
                    f"{p.embedding_ratio:.3f}",
                    f"{p.glu_expansion:.3f}",
                ]
                if (V, tied, r, g) == (16000, True, 0.35, 2.66):  # the study's baseline
                    cells = [f"**{c}**" if i >= 2 else c for i, c in enumerate(cells)]
                lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
