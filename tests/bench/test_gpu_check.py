"""The GPU check must work the first time it meets a GPU: its CPU-quick mode runs every part
(throughput, a ranking run end to end with its phase timings, packing) and prints one JSON."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, write_config
from tests.helpers import tiny_raw


@pytest.mark.slow
def test_gpu_check_quick_on_cpu_runs_every_part(tokenized_dir, tmp_path):
    cfg = write_config(
        tmp_path / "rank.yaml",
        tiny_raw(tokenized_dir.parent, eval={"profile": True, "profile_repeats": 3}),
        {"rank": {"model": {"embedding_ratio": 0.35}}},
    )
    p = subprocess.run(
        [
            sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick",
            "--ranking-config", str(cfg), "--ranking-exp", "rank", "--budget-s", "400",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert [(r["batch"], r["mode"]) for r in doc["throughput"]] == [
        (16, "bf16-eager"),
        (128, "bf16-eager"),
    ]
    assert all(r["tokens_per_s"] > 0 for r in doc["throughput"]), doc["throughput"]
    run = doc["ranking_run"]
    assert "error" not in run, run
    assert run["tokens"] == 16 * 8 * 64 and run["train_tokens_per_s"] > 0
    assert run["deterministic"] is None  # the device's default: bit-exact here, off on CUDA
    t = run["timings"]
    assert {"train_s", "set_up_s", "final_eval_s", "profile_s"} <= set(t)
    assert sum(t.values()) <= run["wall_s"]  # phases of one process: never more than its wall
    # the compiled run: periodic and final evals (other shapes) run eager, so nothing compiles
    # after warm-up (issue 29: evaluation grew from 1.7 s to 21-24 s recompiling on an H200)
    (comp,) = doc["compiled_ranking_runs"]
    assert "error" not in comp, comp
    assert comp["mode"] == "default" and comp["compile"]["frames_compiled"] >= 1
    assert comp["compile"]["recompiles_after_warmup"] == 0, comp["compile"]
    assert targets_measured(doc, "recompiles_after_warmup") == 0
    pack = {r["runs"]: r for r in doc["packing"]["results"]}
    assert set(pack) == {1, 2} and pack[2]["aggregate_tokens_per_s"] > 0
    det = doc["determinism"]
    assert det["same_loss_curve"] is True, det  # deterministic on: the same curve twice
    targets = doc["targets"]
    assert targets["b16_eager"]["measured"] == doc["throughput"][0]["tokens_per_s"]
    assert targets["b128_compiled"]["measured"] is None  # not measured in --quick


def targets_measured(doc: dict, key: str):
    return doc["targets"][key]["measured"]
