"""The training harness with real subprocesses: resume bit for bit, signals, overfit, LR finder."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config
from tests.helpers import tiny_raw, wait_until
from trainer.config import validate
from trainer.exits import EXIT_PREEMPTED
from trainer.run_guard import RunLock
from trainer.train import train


def pax(args, cwd, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "pax.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kw,
    )


def events(run_dir: Path, kind: str | None = None) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return [e for e in out if kind is None or e["event"] == kind]


def _curve(run_dir):
    return [(e["step"], e["loss"]) for e in events(run_dir, "train")]


def _evals(run_dir):
    return [(e["step"], e["split"], e["loss"]) for e in events(run_dir, "eval")]


@pytest.fixture
def long_config(tmp_path, tokenized_dir):
    raw = tiny_raw(tokenized_dir.parent, max_tokens=48 * 8 * 64)
    return write_config(tmp_path / "tiny.yaml", raw, {"tiny": {}})


@pytest.mark.slow
def test_sigkill_and_restart_is_bit_identical(tmp_path, long_config):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = pax(
        ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(ref_dir)],
        tmp_path,
    )
    p = pax(
        ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(cut_dir)],
        tmp_path,
    )
    # kill once a checkpoint exists and training has gone past it
    wait_until(lambda: any(e["step"] >= 14 for e in events(cut_dir, "train")), 120, "step 14")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (cut_dir / "metrics.json").exists()
    again = pax(
        ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(cut_dir)],
        tmp_path,
    )
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    assert _curve(cut_dir) == _curve(ref_dir) and len(_curve(ref_dir)) == 48
    assert _evals(cut_dir) == _evals(ref_dir)
    a = json.loads((ref_dir / "metrics.json").read_text())
    b = json.loads((cut_dir / "metrics.json").read_text())
    assert b["run"]["attempts"] == 2 and a["run"]["attempts"] == 1
    for key in ("dev", "test", "dev_curve", "plan", "params"):
        assert a[key] == b[key], key
    assert a["training"]["train_loss"] == b["training"]["train_loss"]
    starts = events(cut_dir, "start")
    assert [s["resumed"] for s in starts] == [False, True]


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_75_then_resumes(tmp_path, long_config):
    run_dir = tmp_path / "run"
    p = pax(
        ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(run_dir)],
        tmp_path,
    )
    wait_until(lambda: any(e["step"] >= 6 for e in events(run_dir, "train")), 120, "step 6")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == EXIT_PREEMPTED
    end = events(run_dir, "end")[-1]
    assert end["status"] == "preempted" and end["exit_code"] == 75
    ckpts = sorted((run_dir / "checkpoints").glob("step_*.json"))
    assert json.loads(ckpts[-1].read_text())["step"] == end["step"]
    assert not (run_dir / "metrics.json").exists()
    again = pax(
        ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(run_dir)],
        tmp_path,
    )
    assert again.wait(timeout=300) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["run"]["status"] == "succeeded" and m["training"]["steps"] == 48


@pytest.mark.slow
def test_metrics_json_schema(tmp_path, tokenized_dir):
    cfg = validate(tiny_raw(tokenized_dir.parent, eval={"profile": True, "profile_repeats": 3}))
    code, m = train(cfg, tmp_path / "r", progress=False)
    assert code == 0
    on_disk = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert on_disk["run"]["status"] == "succeeded" and on_disk["schema_version"] == 1
    for key in (
        "config",
        "plan",
        "provenance",
        "training",
        "dev",
        "test",
        "smallbench",
        "latency",
        "memory",
        "throughput",
        "params",
        "dev_curve",
    ):
        assert key in on_disk, key
    prov = on_disk["provenance"]
    for key in (
        "git_sha",
        "tokenizer_sha256",
        "data_manifest_sha256",
        "sample",
        "seed",
        "device",
        "dtype",
    ):
        assert key in prov
    assert prov["sample"] is False and prov["device"] == "cpu"
    assert set(on_disk["latency"]) == {"seq128", "seq512"}
    lat = on_disk["latency"]["seq128"]
    assert 0 < lat["median_ms"] <= lat["p90_ms"]
    assert 0 < on_disk["throughput"]["mfu"] < 1
    assert on_disk["memory"]["bytes"] > 0
    dev = on_disk["dev"]
    assert dev["word_ppl"] > dev["token_ppl"] > 1 and not dev["partial"]
    # issue 14: strided final numbers with the non-overlapping ones beside them; inference
    # figures named for what they are; passes over the train split
    assert "every 32 tokens (strided)" in dev["windowing"] and dev["nonoverlap"]["word_ppl"] > 1
    assert set(on_disk["decode_latency"]) == {"ctx128", "ctx512"}
    assert on_disk["decode_latency"]["ctx128"]["ms_per_token"] > 0
    mem = on_disk["inference_memory"]
    assert mem["kind"] == "cpu_tensor_bytes" and mem["weights"] == 4 * on_disk["params"]["total"]
    assert isinstance(on_disk["latency_contended"], bool)
    tr = on_disk["training"]
    assert tr["passes"] == pytest.approx(tr["tokens_seen"] / tr["train_split_tokens"])
    assert on_disk["final_model"]["kind"] == "best"
    assert on_disk["params"]["total"] == on_disk["plan"]["total"]
    # dev PPL falls as training goes on
    curve = on_disk["dev_curve"]
    assert len(curve) >= 2 and curve[-1]["token_ppl"] < curve[0]["token_ppl"]
    # the same numbers are in metrics.jsonl
    last_train = events(tmp_path / "r", "train")[-1]
    assert last_train["loss"] == on_disk["training"]["train_loss"]


@pytest.mark.slow
def test_same_config_and_seed_same_result_on_cpu(tmp_path, tokenized_dir):
    cfg = validate(tiny_raw(tokenized_dir.parent, max_tokens=8 * 8 * 64))
    _, a = train(cfg, tmp_path / "a", progress=False)
    _, b = train(cfg, tmp_path / "b", progress=False)
    assert a["dev"] == b["dev"] and _curve(tmp_path / "a") == _curve(tmp_path / "b")


@pytest.mark.slow
def test_overfit_drives_loss_near_zero(tmp_path, tokenized_dir):
    raw = tiny_raw(
        tokenized_dir.parent,
        max_tokens=160_000,
        model={"total_params": 300_000, "embedding_ratio": 0.1},
        optim={"lr": 1e-2, "warmup_tokens": 2048, "weight_decay": 0.0},
        data={"batch_size": 4},
        log={"every_steps": 5},
        checkpoint={"every_steps": 0},
        runtime={"threads": 2},
    )
    code, m = train(validate(raw), tmp_path / "o", overfit_tokens=1024, progress=False)
    assert code == 0 and m["run"]["overfit_tokens"] == 1024
    losses = [e["loss"] for e in events(tmp_path / "o", "train")]
    assert losses[0] > 4.0
    # one minibatch's loss is noisy (it varied 0.06-0.13 between CPUs at the end): judge the
    # median of the last ten logged losses, far below ln(512) = 6.2 and the first loss
    tail = sorted(losses[-10:])
    assert (tail[4] + tail[5]) / 2 < 0.3, losses[-10:]


@pytest.mark.slow
def test_run_experiment_as_written_in_parallel(tmp_path, tokenized_dir):
    """`python run_experiment.py --config X --exp E`, three experiments at once, in one cwd."""
    base = tiny_raw(
        tokenized_dir.parent,
        max_tokens=8 * 8 * 64,
        eval={"smallbench": True, "smallbench_dir": "nope"},
    )
    (tmp_path / "configs").mkdir()
    write_config(
        tmp_path / "configs" / "embed_ratio.yaml",
        base,
        {"emb25": {"optim": {"lr": 1e-3}}, "emb35": {}, "emb45": {"runtime": {"seed": 3}}},
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run_experiment.py"),
                "--config",
                "configs/embed_ratio.yaml",
                "--exp",
                exp,
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for exp in ("emb25", "emb35", "emb45")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert summary["status"] == "succeeded"
    dirs = sorted(p.parent for p in (tmp_path / "logs").glob("*/*/metrics.json"))
    assert [d.parent.name for d in dirs] == ["emb25", "emb35", "emb45"]
    m = json.loads((dirs[0] / "metrics.json").read_text())
    assert "skipped" in m["smallbench"]  # no suite: said, not silently dropped
    # the same command again: already done, nothing retrained
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_experiment.py"),
            "--config",
            "configs/embed_ratio.yaml",
            "--exp",
            "emb35",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "already succeeded" in again.stderr


@pytest.mark.slow
def test_a_locked_run_dir_is_refused(tmp_path, long_config):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunLock(run_dir):
        p = pax(
            ["train", "--config", str(long_config), "--exp", "tiny", "--run-dir", str(run_dir)],
            tmp_path,
        )
        _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "is being trained by pid" in err


@pytest.mark.slow
def test_bad_config_exits_2_with_the_field(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", {"optim": {"lr": "fast"}}, {"x": {}})
    p = pax(["train", "--config", str(cfg), "--exp", "x"], tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "optim.lr" in err


@pytest.mark.slow
def test_missing_token_files_say_what_to_run(tmp_path):
    raw = tiny_raw(tmp_path / "nothing-here")
    p = pax(
        ["train", "--config", str(write_config(tmp_path / "c.yaml", raw, {"x": {}})), "--exp", "x"],
        tmp_path,
    )
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "pax tokenize" in err


@pytest.mark.slow
def test_lr_find_writes_csv_png_and_suggests(tmp_path, tokenized_dir, long_config):
    p = pax(
        [
            "lr-find",
            "--config",
            str(long_config),
            "--exp",
            "tiny",
            "--run-dir",
            str(tmp_path / "lr"),
        ],
        tmp_path,
    )
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    res = json.loads(out.splitlines()[-1])
    assert 1e-6 < res["suggested_lr"] < 1.0
    rows = (tmp_path / "lr" / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed_loss" and len(rows) > 20
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 5000
    assert "suggested LR" in err


@pytest.mark.slow
def test_pax_eval_reproduces_the_final_dev_numbers(tmp_path, tokenized_dir):
    cfg = validate(tiny_raw(tokenized_dir.parent, max_tokens=8 * 8 * 64))
    _, m = train(cfg, tmp_path / "r", progress=False)
    p = pax(["eval", "--run-dir", str(tmp_path / "r"), "--only", "ppl"], tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert ev["dev"]["token_ppl"] == pytest.approx(m["dev"]["token_ppl"], rel=1e-9)
    assert ev["step"] == m["training"]["steps"]


@pytest.mark.slow
def test_the_final_evaluation_scores_the_best_dev_model(tmp_path, tokenized_dir):
    """Issue 14: early stopping and turned curves evaluated the last model. The best interval
    dev model is kept (checkpoints/best.pt, never pruned) and scored at the end; `pax eval`
    scores the same model."""
    raw = tiny_raw(
        tokenized_dir.parent,
        max_tokens=24 * 8 * 64,
        eval={"every_tokens": 4 * 8 * 64},
        checkpoint={"every_steps": 4, "keep_latest_k": 1},
    )
    code, m = train(validate(raw), tmp_path / "r", progress=False)
    assert code == 0
    curve = m["dev_curve"]
    best = min(curve, key=lambda e: e["token_ppl"])
    fm = m["final_model"]
    assert fm["kind"] == "best" and fm["step"] == best["step"] and fm["tokens"] == best["tokens"]
    assert fm["last_eval"] == curve[-1]
    assert (tmp_path / "r" / "checkpoints" / "best.pt").is_file()
    p = pax(["eval", "--run-dir", str(tmp_path / "r"), "--only", "ppl"], tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert ev["step"] == best["step"]
    assert ev["dev"]["token_ppl"] == pytest.approx(m["dev"]["token_ppl"], rel=1e-9)
    raw["eval"]["final_model"] = "last"
    _, last = train(validate(raw), tmp_path / "l", progress=False)
    assert last["final_model"]["kind"] == "last" and last["final_model"]["step"] == 24


@pytest.mark.slow
def test_a_wsd_run_scores_the_end_of_its_decay(tmp_path, tokenized_dir):
    """Issue 28: the scored model was not the annealed one. With evals every 10 steps of 24,
    the last dev eval sat at step 20, mid-decay, and `final_model: best` chose among interval
    evals only. The end of the run is now always evaluated, and under wsd the model at the end
    of its decay is the one scored (and what `pax eval` loads), the best interval eval beside."""
    raw = tiny_raw(
        tokenized_dir.parent,
        max_tokens=24 * 8 * 64,
        optim={"schedule": "wsd", "decay_fraction": 0.3},
        eval={"every_tokens": 10 * 8 * 64},
        checkpoint={"every_steps": 4, "keep_latest_k": 1},
    )
    code, m = train(validate(raw), tmp_path / "r", progress=False)
    assert code == 0
    assert [e["step"] for e in m["dev_curve"]] == [10, 20, 24]
    fm = m["final_model"]
    assert (fm["kind"], fm["why"], fm["step"]) == ("last", "the end of the wsd decay", 24)
    assert fm["best_eval"]["step"] in (10, 20, 24) and fm["last_eval"]["step"] == 24
    p = pax(["eval", "--run-dir", str(tmp_path / "r"), "--only", "ppl"], tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert ev["step"] == 24 and ev["dev"]["token_ppl"] == pytest.approx(m["dev"]["token_ppl"])
    from runner.study.results import row

    got = row(config=m["config"], plan=m.get("plan"), metrics=m)
    assert got["best_interval_dev_word_ppl"] == fm["best_eval"]["word_ppl"]


def test_sample_runs_say_so_in_the_dataset_name():
    from trainer.metrics_doc import dataset_label

    assert dataset_label({"dataset": "WikiText-2"}, sample=False) == "WikiText-2"
    assert dataset_label({"dataset": "WikiText-2"}, sample=True).startswith("WikiText-2 SAMPLE (")


def test_a_budget_in_passes_over_the_train_split(tmp_path, tokenized_dir):
    import json as _json

    train_tokens = _json.loads((tokenized_dir / "manifest.json").read_text())["splits"]["train"][
        "tokens"
    ]
    raw = tiny_raw(tokenized_dir.parent, max_passes=0.05, eval={"every_tokens": 0})
    code, m = train(validate(raw), tmp_path / "p", progress=False)
    assert code == 0
    budget = round(0.05 * train_tokens)
    assert m["config"]["max_tokens"] == budget
    assert m["training"]["tokens_seen"] == budget // (8 * 64) * (8 * 64)
    assert m["training"]["passes"] == pytest.approx(0.05, abs=8 * 64 / train_tokens)


def test_final_eval_cap_is_flagged_partial_and_keeps_old_hashes(tmp_path, tokenized_dir):
    """eval.final_max_tokens scores only the first tokens of dev and test (a demo's setting);
    the numbers say partial, and a config without it keeps the identity it always had."""
    raw = tiny_raw(tokenized_dir.parent, max_tokens=2 * 8 * 64, eval={"final_max_tokens": 512})
    code, m = train(validate(raw), tmp_path / "run", progress=False)
    assert code == 0
    for split in ("dev", "test"):
        assert m[split]["partial"] is True and m[split]["scored_tokens"] <= 512
    whole = validate(tiny_raw(tokenized_dir.parent))
    assert whole.eval.final_max_tokens == 0
    dump = whole.model_dump(exclude={"name"})
    del dump["eval"]["final_max_tokens"]
    import hashlib

    old = hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:12]
    assert whole.spec_hash() == old
