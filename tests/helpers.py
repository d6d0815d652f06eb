"""Shared test helpers: polling with a deadline (never sleep-then-assert), and the builders of
test data (a tiny run config, a small plan, a result document), in one place."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# the ledger's newest Alembic revision: the highest numbered file in migrations/versions/
HEAD_REVISION = max(
    p.name.split("_")[0]
    for p in (Path(__file__).resolve().parents[1] / "migrations" / "versions").glob("0*.py")
)

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T], timeout: float = 60, what: str = "the condition", every: float = 0.1
) -> T:
    """Poll `pred` until it returns something truthy (which is returned) or `timeout` seconds
    pass (TimeoutError naming `what` and the last value seen). Robust on a loaded machine: the
    deadline is the only clock, and the predicate is checked once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen in {timeout:.0f}s (last: {value!r})")
        time.sleep(every)


def raw_post(url: str, path: str, headers: dict, first_body_bytes: bytes = b"") -> tuple[int, str]:
    """Send a request's head (and the first bytes of its body) and read the answer without
    sending the rest: the server must answer before the body arrives."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        s.sendall(head.encode("latin-1") + b"\r\n" + first_body_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1])
        return status, data.decode("latin-1")


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def tiny_raw(tok_root: Path, **sections) -> dict:
    """A config small enough to train in seconds on the V=512 test tokenizer."""
    raw = {
        "name": "tiny",
        "max_tokens": 16 * 8 * 64,
        "model": {
            "total_params": 60_000,
            "embedding_ratio": 0.35,
            "glu_expansion": 2.66,
            "vocab_size": 512,
            "tied_lm_head": True,
        },
        "data": {"tokenized_dir": str(tok_root), "seq_len": 64, "batch_size": 8},
        "optim": {"lr": 3e-3, "warmup_tokens": 1024},
        "eval": {"every_tokens": 4096, "max_tokens": 2048, "smallbench": False, "profile": False},
        "checkpoint": {"every_steps": 4, "every_minutes": 0, "keep_latest_k": 2},
        "log": {"every_steps": 1, "wandb": False},
        "runtime": {"threads": 1, "seed": 7},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return raw


SMALL_PLAN = """
name: small
launcher: worker
baseline: {embedding_ratio: 0.35, glu_expansion: 2.66, vocab_size: 16000, tied_lm_head: true}
base: %s
ranking: {max_tokens: 4096, seeds: [7], embedding_ratio: [0.35, 0.45],
          glu_expansion: [2.0, 2.66]}
ablation: {vocab_sizes: [16000], tied: [true, false], embedding_ratio: [0.25, 0.45]}
controls: [{name: lr-tiny, overrides: {optim: {lr: 1.0e-6}}}]
finalists: {max_tokens: 4096, seeds: [1, 2, 3], top_k: 1, thin_margin: 0.0}
kill_rule: {margin: 0.05, relative: true, window_tokens: 1024}
"""


def small_plan(tok_root):
    """Cells of the study's shape (10M, V=16k): these tests decide, they do not train."""
    base = tiny_raw(tok_root)
    base.pop("name")
    base.pop("max_tokens")
    base["model"] = {"total_params": 10_000_000}
    return SMALL_PLAN % json.dumps(base)


def submit(svc, text, ctype="application/yaml"):
    return svc.post(
        "/sweeps",
        content=text,
        headers={"Content-Type": ctype},
    )


def post_result(svc, run_id, ppl, status="succeeded", latency=1.0):
    metrics = {
        "run": {"status": status, "exit_reason": "test"},
        "training": {"tokens_seen": 4096},
        "dev": {"token_ppl": ppl / 2, "word_ppl": ppl, "bits_per_byte": 1.0},
        "latency": {"seq128": {"median_ms": latency}},
        "provenance": {"sample": False},
    }
    r = svc.post(
        f"/runs/{run_id}/result",
        json=metrics,
    )
    assert r.status_code == 200, r.text
