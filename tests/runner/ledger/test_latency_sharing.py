"""Latency that knows its neighbours (issue 28): contention was flagged on CPU only, from the
1-minute load average; on a GPU, where 2-8 runs share a device, never. The trainer now records
when it measured (and the other processes' CPU use over exactly that window), and the ledger
counts the runs that had an attempt on the same device then: any makes the latency contended,
and a contended latency never enters a mean or a Pareto front."""

import subprocess
import sys
import time

import torch

from runner.cost import Pricing
from runner.ledger.attempts import Placement
from runner.ledger.db import make_engine, upgrade
from runner.ledger.lifecycle import claim_queued
from runner.ledger.results import get_result, store_result
from runner.ledger.runs import create_run
from runner.study.stats import finalist_stats
from tests.helpers import tiny_raw
from trainer.config import validate
from trainer.evaluation.profile import Window


def test_the_window_sees_other_processes_on_the_cpu():
    burn = "import time\nt = time.time()\nwhile time.time() - t < 3: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        time.sleep(0.5)  # both burning before the window opens
        with Window() as w:
            time.sleep(1.0)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if w.other_cores is None:  # no /proc/stat here
        return
    assert w.other_cores > 0.5 and w.contended(torch.device("cpu")) is True
    assert w.contended(torch.device("meta")) is None  # a GPU is the ledger's to judge
    d = w.as_dict()
    assert d["start"] < d["end"] and d["other_cpu_cores"] == w.other_cores


def doc(start, end, contended=False):
    return {
        "run": {"status": "succeeded", "exit_code": 0},
        "latency": {"seq128": {"median_ms": 5.0}},
        "latency_contended": contended,
        "latency_window": {"start": start, "end": end, "other_cpu_cores": 0.0},
    }


def test_the_ledger_counts_the_runs_sharing_the_gpu_while_latency_was_measured(
    tmp_path, tokenized_dir
):
    db = tmp_path / "pax.db"
    upgrade(db)
    engine = make_engine(db)
    cfg = validate(tiny_raw(tokenized_dir.parent))
    a, b, c = (create_run(engine, cfg=cfg, launcher="worker") for _ in range(3))
    t0 = time.time()
    for device in ("w1:gpu0", "w1:gpu0", "w2:gpu0"):  # claimed oldest first: a, b, then c
        claim_queued(
            engine, limit=1, launcher="worker:w-s0", kinds=("worker",),
            placement=Placement(accelerator="H100", spot=True, device=device),
            pricing=Pricing(), running="test",
        )  # fmt: skip
    # a's latency measured while b trained on its GPU; c was on another GPU
    store_result(engine, run_id=a.id, metrics=doc(t0, time.time() + 1))
    got = get_result(engine, run_id=a.id)
    assert got["latency_shared_runs"] == 1 and got["latency_contended"] is True
    store_result(engine, run_id=c.id, metrics=doc(t0, time.time() + 1))
    got = get_result(engine, run_id=c.id)
    assert got["latency_shared_runs"] == 0 and got["latency_contended"] is False
    # a window before anyone else started: alone on the device
    store_result(engine, run_id=b.id, metrics=doc(t0 - 100, t0 - 50))
    assert get_result(engine, run_id=b.id)["latency_shared_runs"] == 0


def test_a_contended_latency_never_enters_the_mean():
    def row(seed, lat, busy):
        return {
            "cell": "emb35", "axis": "embedding_ratio", "phase": "finalists", "seed": seed,
            "status": "succeeded", "dev_word_ppl": 100.0 + seed, "test_word_ppl": 104.0,
            "embedding_ratio": 0.35, "glu_expansion": 2.66, "vocab_size": 16000,
            "tied_lm_head": True, "smallbench_macro_acc": 0.6, "latency_seq128_ms": lat,
            "latency_contended": busy, "sample": False,
        }  # fmt: skip

    (f,) = finalist_stats([row(1, 5.0, False), row(2, 7.0, False), row(3, 40.0, True)])
    assert f["latency_seq128_ms"] == 6.0 and f["latency_contended_seeds"] == 1
