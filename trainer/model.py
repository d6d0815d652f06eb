"""A small Llama-style decoder: pre-norm RMSNorm, RoPE, causal SDPA, SwiGLU, no biases.

The architecture is whatever `trainer.params.plan` solved; `GPT.from_plan` builds it and checks
that the analytic count equals the real one, so the study's budget split is never approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.params import Plan


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    ffn_hidden: int
    tied_lm_head: bool = True
    max_seq_len: int = 1024
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0  # embeddings, attention weights, residual branches; training only

    @classmethod
    def from_plan(cls, p: Plan, max_seq_len: int = 1024, dropout: float = 0.0) -> ModelConfig:
        return cls(
            p.vocab_size,
            p.d_model,
            p.n_layers,
            p.n_heads,
            p.ffn_hidden,
            p.tied_lm_head,
            max_seq_len,
            dropout=dropout,
        )


def rope_cache(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width tables (T, head_dim): each half's angle repeated, so a rotation is two
    multiplies and an add over the whole head (`apply_rope`)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    full = torch.cat((freqs, freqs), dim=-1)
    return full.cos(), full.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (..., T, D); rotate pairs (x1, x2) split by halves (the GPT-NeoX / Llama HF layout):
    (x1 cos - x2 sin, x2 cos + x1 sin) as x * cos + (-x2, x1) * sin, bit for bit the same, in 7
    kernels for q and k together where the split form took 18 (eager at small batches is
    launch-bound)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None
    ) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], cos, sin).unbind(0)  # q and k rotated in one pass
        v = qkv[2]
        if cache is None:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:  # inference: append to this layer's cache, attend to everything cached so far
            k, v, first = cache.append(k, v)
            # a prefill (several new tokens from position 0) is causal; a decode step sees all
            y = F.scaled_dot_product_attention(q, k, v, is_causal=first and T > 1)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # gate and up fused into one matmul; still 2 * d * f parameters.
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)  # on each residual branch

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, cache))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class LayerCache:
    """One layer's keys and values for incremental decoding, preallocated to max length."""

    def __init__(self, B: int, H: int, T: int, D: int, dtype, device):
        self.k = torch.zeros(B, H, T, D, dtype=dtype, device=device)
        self.v = torch.zeros(B, H, T, D, dtype=dtype, device=device)
        self.len = 0

    def append(self, k: torch.Tensor, v: torch.Tensor):
        first = self.len == 0
        end = self.len + k.shape[2]
        self.k[:, :, self.len : end] = k
        self.v[:, :, self.len : end] = v
        self.len = end
        return self.k[:, :, :end], self.v[:, :, :end], first


class KVCache:
    """Keys and values of every layer (inference only): decode costs one token's compute."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, dtype, device):
        hd = cfg.d_model // cfg.n_heads
        self.layers = [
            LayerCache(batch, cfg.n_heads, max_len, hd, dtype, device) for _ in range(cfg.n_layers)
        ]

    @property
    def len(self) -> int:
        return self.layers[0].len

    def nbytes(self) -> int:
        return sum(c.k.nbytes + c.v.nbytes for c in self.layers)


class LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropy of `h @ W.T` against `targets`, in row chunks, gradients included.

    The LM head is the largest matmul of these models (V=16k against d~220) and a plain
    logits -> float -> log_softmax path moves (N, V) fp32 tensors through memory four times.
    Here each chunk's logits live only while its loss and its gradient are computed (in the
    forward pass, as Liger's fused linear-CE does), so the full logits never exist.
    """

    @staticmethod
    def forward(ctx, h, W, targets, chunk: int):
        need_grad = h.requires_grad or W.requires_grad
        grad_h = torch.empty_like(h) if need_grad else None
        # accumulated in at least fp32 across chunks (bf16 sums would lose small chunks)
        acc = torch.promote_types(W.dtype, torch.float32)
        grad_W = torch.zeros(W.shape, dtype=acc, device=W.device) if need_grad else None
        loss = torch.zeros((), dtype=acc, device=h.device)
        for s in range(0, h.shape[0], chunk):
            hc, tc = h[s : s + chunk], targets[s : s + chunk]
            logits = (hc @ W.t()).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum()
            if need_grad:
                # d(sum loss)/d logits = softmax - onehot
                p = torch.exp_(logits.sub_(lse[:, None]))
                p[torch.arange(tc.shape[0], device=p.device), tc] -= 1.0
                p = p.to(h.dtype)
                grad_h[s : s + chunk] = p @ W
                grad_W.add_((p.t() @ hc).to(acc))
        ctx.save_for_backward(grad_h, grad_W)
        ctx.w_dtype = W.dtype
        return loss

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_W = ctx.saved_tensors
        return grad_h * g, (grad_W * g).to(ctx.w_dtype), None, None


# CPU: chunks of 128 rows keep each chunk's logits in cache; that won on 2 cores (47.6% of peak).
CPU_CHUNK_ROWS = 128
# CUDA: a loop of small chunks is launch-bound (256 iterations of ~6 kernels at 32k rows), so a
# chunk, when the full logits do not fit the budget, is never smaller than this.
MIN_CUDA_CHUNK_ROWS = 8192
# bytes per row of the LM head's loss on the full-logits path: bf16 logits, their fp32 copy and
# the fp32 gradient of the log-softmax, per vocabulary entry
_LOGIT_BYTES = 2 + 4 + 4


@dataclass(frozen=True)
class LossPlan:
    """How the LM-head loss runs on a device: one plain cross-entropy over the full logits up to
    `full_rows` rows (a few large kernels that torch.compile fuses, no Python loop), otherwise
    LinearCrossEntropy in chunks of `chunk` rows."""

    chunk: int = CPU_CHUNK_ROWS
    full_rows: int = 0

    @classmethod
    def for_device(
        cls, device: torch.device, vocab: int, budget_bytes: int | None = None, chunk: int = 0
    ) -> LossPlan:
        """From the device and a memory budget, not a constant. `chunk` > 0 forces chunks of
        that many rows (runtime.loss_chunk_rows). The CUDA budget defaults to an eighth of the
        free memory, at most 8 GiB, so that several packed runs still fit one card."""
        if chunk:
            return cls(chunk=chunk, full_rows=0)
        if device.type != "cuda":
            return cls()
        if budget_bytes is None:
            free, _ = torch.cuda.mem_get_info(device)
            budget_bytes = min(free // 8, 8 << 30)
        rows = budget_bytes // (vocab * _LOGIT_BYTES)
        return cls(chunk=max(MIN_CUDA_CHUNK_ROWS, rows), full_rows=rows)


def full_cross_entropy(
    h: torch.Tensor, W: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """The plain path: full logits, fp32 log-softmax (what nanoGPT does), autograd's backward."""
    logits = F.linear(h.reshape(-1, h.shape[-1]), W)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets.reshape(-1), reduction=reduction)


def linear_cross_entropy(
    h: torch.Tensor,
    W: torch.Tensor,
    targets: torch.Tensor,
    reduction: str = "mean",
    chunk: int = CPU_CHUNK_ROWS,
) -> torch.Tensor:
    """Cross-entropy of the LM head without materialising the (N, V) logits."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}: use 'mean' or 'sum'")
    if torch.is_autocast_enabled(h.device.type):
        dt = torch.get_autocast_dtype(h.device.type)
        h, W = h.to(dt), W.to(dt)
    h = h.reshape(-1, h.shape[-1])
    targets = targets.reshape(-1)
    with torch.autocast(h.device.type, enabled=False):
        loss = LinearCrossEntropy.apply(h, W, targets, chunk)
    if reduction == "mean":
        return loss / targets.numel()
    return loss


class CompiledBody:
    """The CPU training step: the compiled transformer body, then the eager chunked loss."""

    def __init__(self, model: GPT, hidden):
        self.model, self.hidden = model, hidden

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"):
        return None, self.model.head_loss(self.hidden(idx), targets, reduction)


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
            raise ValueError(
                f"d_model={cfg.d_model} must split into n_heads={cfg.n_heads} heads "
                "of an even head_dim"
            )
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        # A tied head has no weight of its own: forward() reuses embed.weight.
        self.head = None if cfg.tied_lm_head else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rope_cache(cfg.max_seq_len, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.loss_plan = LossPlan()  # set per device by the trainer (LossPlan.for_device)
        self.reset_parameters()

    @classmethod
    def from_plan(cls, p: Plan, max_seq_len: int = 1024, dropout: float = 0.0) -> GPT:
        model = cls(ModelConfig.from_plan(p, max_seq_len, dropout))
        # The plan's analytic count per component equals the built model's, exactly.
        real, planned = model.param_counts(), {k: getattr(p, k) for k in model.param_counts()}
        if real != planned:
            raise RuntimeError(f"parameter accounting drifted: planned {planned}, built {real}")
        return model

    def reset_parameters(self) -> None:
        # GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers) so the
        # residual stream's variance does not grow with depth.
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)  # RMSNorm gains
            elif name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, 0.0, std)

    def compiled(self, mode: str = "default"):
        """What to call for a compiled training step, compiled once for the run's static shapes
        (`dynamic=False`: batch and sequence never change in training). The model itself stays
        eager: evaluation (other batch shapes, strided windows) calls it, so a new shape never
        recompiles (on an H200 periodic evaluation grew from 1.7 s to 21-24 s compiling each).
        With a full-logits loss (CUDA) the whole forward, LM head and loss included, is one graph
        (autograd compiles its backward too); with the chunked loss (CPU) only the transformer
        body is compiled, since compiling the chunk loop unrolls it and was slower than eager
        there. `mode` is torch.compile's: "reduce-overhead" adds CUDA graphs (small batches,
        where launches dominate)."""
        kw = {"dynamic": False, **({} if mode == "default" else {"mode": mode})}
        if self.loss_plan.full_rows:
            return torch.compile(self, **kw)
        return CompiledBody(self, torch.compile(self.hidden, **kw))

    @property
    def lm_weight(self) -> torch.Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    def param_counts(self) -> dict[str, int]:
        """Real count per component (shared tensors counted once, as `parameters()` does)."""
        counts = {
            "embedding": self.embed.weight.numel(),
            "attention": 0,
            "ffn": 0,
            "norm": self.norm.weight.numel(),
            "head": 0 if self.head is None else self.head.weight.numel(),
        }
        for b in self.blocks:
            counts["attention"] += sum(p.numel() for p in b.attn.parameters())
            counts["ffn"] += sum(p.numel() for p in b.ffn.parameters())
            counts["norm"] += b.attn_norm.weight.numel() + b.ffn_norm.weight.numel()
        counts["total"] = sum(p.numel() for p in self.parameters())
        if counts["total"] != sum(v for k, v in counts.items() if k != "total"):
            raise RuntimeError("a parameter is outside the known components")
        return counts

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        T = idx.shape[1]
        start = cache.len if cache is not None else 0
        if self.cfg.max_seq_len < start + T:
            raise ValueError(f"sequence length {start + T} > max_seq_len={self.cfg.max_seq_len}")
        x = self.embed_drop(self.embed(idx))
        cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache.layers[i] if cache is not None else None)
        return self.norm(x)

    @torch.no_grad()
    def next_logits(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) of the token after `idx`, given (and extending) the cache: a prefill
        when the cache is empty, a decode step when idx is one new token."""
        h = self.hidden(idx, cache)
        return F.linear(h[:, -1], self.lm_weight)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(logits (B, T, V), None) without targets; (None, cross-entropy) with them, by the
        device's LossPlan: full logits where they fit its budget, else LinearCrossEntropy."""
        h = self.hidden(idx)
        if targets is None:
            return F.linear(h, self.lm_weight), None
        return None, self.head_loss(h, targets, reduction)

    def head_loss(self, h: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"):
        """Cross-entropy of the LM head on hidden states, by the device's LossPlan."""
        if targets.numel() <= self.loss_plan.full_rows:
            return full_cross_entropy(h, self.lm_weight, targets, reduction)
        chunk = self.loss_plan.chunk
        return linear_cross_entropy(h, self.lm_weight, targets, reduction, chunk)

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), PaLM appendix B style:
        6 * matmul params (the embedding lookup is free, the LM head is a matmul) plus
        attention's 12 * L * d * T."""
        c = self.cfg
        matmul = self.param_counts()["attention"] + self.param_counts()["ffn"]
        matmul += c.vocab_size * c.d_model  # LM head, tied or not
        return 6 * matmul + 12 * c.n_layers * c.d_model * seq_len
