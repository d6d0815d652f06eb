import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_raw
from trainer.config import validate
from trainer.evaluation.smallbench import score, sentence_logprobs, wikitext_style
from trainer.prep import smallbench
from trainer.prep.fetch import FetchError
from trainer.prep.smallbench import TASKS, build_suite, load_suite
from trainer.prep.tokenizer import load_tokenizer
from trainer.train import train


class Prefers(torch.nn.Module):
    """A fake LM whose next-token distribution ignores context and favours some token ids."""

    def __init__(self, V, favoured):
        super().__init__()
        self.bias = torch.zeros(V)
        self.bias[list(favoured)] = 4.0

    def forward(self, idx, targets=None, reduction="mean"):
        return self.bias.expand(*idx.shape, -1).clone(), None


def test_scoring_on_a_hand_made_pair_set(tokenized_dir):
    sp = load_tokenizer(tokenized_dir)
    favoured = set(sp.encode("the cat sat on the mat ."))
    model = Prefers(sp.get_piece_size(), favoured)
    suite = {
        "agreement": [
            {"good": "the cat sat on the mat.", "bad": "zq xv kw jj qq.", "field": "morphology"}
        ]
        * 3,
        "reversed": [
            {"good": "zq xv kw jj qq.", "bad": "the cat sat on the mat.", "field": "syntax"}
        ]
        * 2,
    }
    res = score(model, sp, suite, torch.device("cpu"))
    assert res["tasks"]["agreement"]["acc"] == 1.0 and res["tasks"]["agreement"]["n"] == 3
    assert res["tasks"]["reversed"]["acc"] == 0.0
    assert res["macro_acc"] == 0.5 and res["pairs"] == 5
    assert res["by_field"] == {"morphology": 1.0, "syntax": 0.0}
    assert res["tasks"]["agreement"]["stderr"] == 0.0


def test_summed_loglik_matches_a_manual_computation(tokenized_dir):
    sp = load_tokenizer(tokenized_dir)
    V = sp.get_piece_size()
    model = Prefers(V, {7, 8, 9})
    s = "the river ."
    ids = sp.encode(wikitext_style(s))
    logp = torch.log_softmax(model.bias, -1)
    expected = float(sum(logp[i] for i in ids))
    got = sentence_logprobs(model, sp, [s, s + " and more words"], torch.device("cpu"))
    assert got[0] == pytest.approx(expected, rel=1e-5)
    assert got[1] < got[0]  # padding of the shorter sentence changed nothing


def test_stderr_formula():
    sp = type("SP", (), {"encode": lambda self, s: [10 if "good" in s else 11]})()
    model = Prefers(20, {10})
    pairs = [{"good": "good", "bad": "bad", "field": "f"}] * 3 + [
        {"good": "bad", "bad": "good", "field": "f"}
    ]
    res = score(model, sp, {"t": pairs}, torch.device("cpu"))
    assert res["tasks"]["t"]["acc"] == 0.75
    assert res["tasks"]["t"]["stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_wikitext_style():
    assert wikitext_style("The dog hasn't eaten, has it?") == "The dog has n't eaten , has it ?"
    assert wikitext_style("Sue's cats left.") == "Sue 's cats left ."


# two paradigms outside SmallBench's 9: what `--tasks all` adds
EXTRA = {"ellipsis_n_bar_1": "syntax", "sentential_negation_npi_scope": "semantics"}


def blimp_zip(prefix="blimp-master/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for task, field in {**TASKS, **EXTRA}.items():
            rows = [
                {
                    "sentence_good": f"Cats {i} like {task}.",
                    "sentence_bad": f"Cats {i} likes.",
                    "field": field,
                    "linguistics_term": task,
                    "pairID": str(i),
                }
                for i in range(300)
            ]
            z.writestr(f"{prefix}data/{task}.jsonl", "\n".join(json.dumps(r) for r in rows))
        z.writestr("__MACOSX/data/._adjunct_island.jsonl", b"\xb0\x00junk")
    return buf.getvalue()


def test_build_suite_over_http_with_held_out_check(tmp_path, http_mirror):
    mirror = tmp_path / "mirror"
    (mirror / "blimp").mkdir(parents=True)
    data = blimp_zip(prefix="")
    (mirror / "blimp" / "BLiMP.zip").write_bytes(data)
    (mirror / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  blimp/BLiMP.zip\n")
    corpus = tmp_path / "train.txt"
    # two sentences of the suite occur (WikiText-tokenised) in the training corpus
    corpus.write_text(
        " = Heading = \n Cats 5 like passive_1 . Other words here . \n cats 7 likes . \n"
    )
    m = build_suite(tmp_path / "sb", mirror=http_mirror(mirror), corpus=corpus, pairs_per_task=100)
    assert len(m["tasks"]) == len(TASKS) >= 6
    assert {"morphology", "syntax", "semantics"} <= {t["field"] for t in m["tasks"].values()}
    suite = load_suite(tmp_path / "sb")
    dropped = {t: v["dropped_in_training_corpus"] for t, v in m["tasks"].items()}
    # 'Cats 7 likes.' is a bad sentence in every task; chosen ones are dropped wherever sampled
    assert (
        m["held_out_check"]["checked"]
        and m["held_out_check"]["dropped"] == sum(dropped.values()) >= 1
    )
    for task, pairs in suite.items():
        assert len(pairs) == 100 - dropped[task]
        assert all("Cats 7 " not in p["bad"] for p in pairs)
    assert all(
        "passive_1" not in p["good"] or "Cats 5 " not in p["good"] for p in suite["passive_1"]
    )
    # deterministic: the same selection again
    m2 = build_suite(
        tmp_path / "sb2", mirror=http_mirror(mirror), corpus=corpus, pairs_per_task=100
    )
    assert m2["tasks"] == m["tasks"]
    assert (tmp_path / "sb" / "passive_1.jsonl").read_text() == (
        tmp_path / "sb2" / "passive_1.jsonl"
    ).read_text()


def test_corrupt_archive_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "blimp").mkdir(parents=True)
    (mirror / "blimp" / "BLiMP.zip").write_bytes(blimp_zip())  # hash != the official one
    with pytest.raises(FetchError, match="does not match"):
        build_suite(tmp_path / "sb", mirror=str(mirror))


def test_missing_suite_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_smallbench.py"):
        load_suite(tmp_path)


def _local_mirror(tmp_path) -> Path:
    mirror = tmp_path / "mirror"
    (mirror / "blimp").mkdir(parents=True)
    data = blimp_zip(prefix="")
    (mirror / "blimp" / "BLiMP.zip").write_bytes(data)
    (mirror / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  blimp/BLiMP.zip\n")
    return mirror


def test_all_paradigms_build_beside_the_study_suite_which_stays_as_it_was(tmp_path, http_mirror):
    """Issue 28: `tasks: all` scores every BLiMP paradigm, in <root>/all; SmallBench's 9 are
    untouched (their files, hence their cached references, are the same bytes)."""
    url = http_mirror(_local_mirror(tmp_path))
    root = tmp_path / "sb"
    nine = build_suite(root, mirror=url, pairs_per_task=20)
    before = {p.name: p.read_bytes() for p in root.glob("*.jsonl")}
    every = build_suite(root, mirror=url, pairs_per_task=20, tasks="all")
    assert nine["selection"] == "smallbench" and set(nine["tasks"]) == set(TASKS)
    assert every["selection"] == "all" and set(every["tasks"]) == set(TASKS) | set(EXTRA)
    assert every["suite"] == f"BLiMP, all {len(TASKS) + len(EXTRA)} paradigms"
    # BLiMP's own field for the paradigms SmallBench does not name
    assert {t: every["tasks"][t]["field"] for t in EXTRA} == EXTRA
    assert {p.name: p.read_bytes() for p in root.glob("*.jsonl")} == before
    assert set(load_suite(root)) == set(TASKS)
    assert set(load_suite(root, "all")) == set(TASKS) | set(EXTRA)
    # the shared paradigms draw the same pairs in both suites
    assert load_suite(root, "all")["passive_1"] == load_suite(root)["passive_1"]
    with pytest.raises(ValueError, match="tasks='most'.*smallbench, all"):
        build_suite(tmp_path / "x", mirror=url, tasks="most")
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_missing_all_suite_names_the_flag_that_builds_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_smallbench.py --tasks all --output"):
        load_suite(tmp_path, "all")


@pytest.mark.slow
def test_a_run_with_smallbench_tasks_all_scores_every_paradigm(tmp_path, tokenized_dir):
    root = tmp_path / "sb"
    build_suite(root, mirror=str(_local_mirror(tmp_path)), pairs_per_task=10, tasks="all")
    raw = tiny_raw(
        tokenized_dir.parent,
        eval={"smallbench": True, "smallbench_dir": str(root), "smallbench_tasks": "all"},
    )
    code, m = train(validate(raw), tmp_path / "r", progress=False)
    sb = m["smallbench"]
    assert code == 0 and set(sb["tasks"]) == set(TASKS) | set(EXTRA), sb.get("skipped")
    assert sb["suite"] == {
        "selection": "all",
        "name": f"BLiMP, all {len(TASKS) + len(EXTRA)} paradigms",
        "tasks": len(TASKS) + len(EXTRA),
    }
    # the references are of the same suite: its untrained band has every paradigm too
    assert sb["pairs"] == 10 * (len(TASKS) + len(EXTRA))
    assert sb["vs_untrained"] in ("above", "inside", "below")
    # the study's default, with no all-suite built: skipped, saying how to build it
    raw["eval"]["smallbench_dir"] = str(tmp_path / "none")
    code, m = train(validate(raw), tmp_path / "r2", progress=False)
    assert code == 0 and "--tasks all" in m["smallbench"]["skipped"]


@pytest.mark.mirror
def test_real_blimp_from_the_mirror(tmp_path, real_mirror):
    m = build_suite(tmp_path / "sb", mirror=str(real_mirror))
    assert len(m["tasks"]) == len(TASKS)
    assert all(t["pairs"] == 200 for t in m["tasks"].values())
    assert m["source"]["sha256"] == smallbench.MIRROR_SHA256
    every = build_suite(tmp_path / "sb", mirror=str(real_mirror), tasks="all")
    assert len(every["tasks"]) == 67 and every["suite"] == "BLiMP, all 67 paradigms"
    assert {t["field"] for t in every["tasks"].values()} == {
        "morphology", "syntax", "semantics", "syntax_semantics"
    }  # fmt: skip


def test_scores_do_not_depend_on_the_untrained_bos_row(tokenized_dir):
    """Issue 14: scoring conditioned on BOS, which training never shows, so redrawing that
    embedding row moved accuracy. Conditioned on <nl>, the BOS row is never read as an input
    (untied here, so the head's BOS row, which normalises every softmax, stays as it was)."""
    from trainer.model import GPT, ModelConfig
    from trainer.prep.tokenizer import BOS_ID

    sp = load_tokenizer(tokenized_dir)
    torch.manual_seed(0)
    model = GPT(ModelConfig(sp.get_piece_size(), 32, 2, 4, 80, False, 64))
    suite = {
        "t": [
            {"good": "the cat sat on the mat.", "bad": "mat the on sat cat the.", "field": "x"},
            {"good": "a river runs.", "bad": "a river run.", "field": "x"},
        ]
    }
    before = sentence_logprobs(
        model, sp, [p[k] for p in suite["t"] for k in ("good", "bad")], torch.device("cpu")
    )
    with torch.no_grad():
        row = model.embed.weight[BOS_ID]
        row.copy_(torch.randn_like(row) * row.norm() / math.sqrt(row.numel()))
    after = sentence_logprobs(
        model, sp, [p[k] for p in suite["t"] for k in ("good", "bad")], torch.device("cpu")
    )
    assert before == after


def test_length_normalised_scores_flags_and_an_item_bootstrap(tokenized_dir):
    """Issue 28: summed log-probability carries a length prior where good and bad sentences
    differ in token count (4 BLiMP tasks): such tasks are flagged, and a length-normalised
    accuracy sits beside the summed one. The macro's standard error is a bootstrap over items
    (deterministic), and says it leaves model noise out."""
    sp = load_tokenizer(tokenized_dir)
    favoured = set(sp.encode("the cat sat on the mat ."))
    model = Prefers(sp.get_piece_size(), favoured)
    long_good = {"good": "the cat sat on the mat the cat sat.", "bad": "the zq.", "field": "f"}
    same = [
        {"good": "the cat sat on the mat.", "bad": "zq xv kw jj qq.", "field": "f"},
        {"good": "zq xv kw jj qq.", "bad": "the cat sat on the mat.", "field": "f"},
    ]
    suite = {"longer": [long_good] * 4, "mixed": same * 3}
    res = score(model, sp, suite, torch.device("cpu"))
    longer = res["tasks"]["longer"]
    assert longer["length_mismatched"] and longer["length_mismatch"] == 1.0
    # summed: the longer good sentence loses on length; per token it is the likelier one
    assert longer["acc"] == 0.0 and longer["acc_norm"] == 1.0
    assert "longer" in res["length_mismatched_tasks"]
    assert res["macro_acc_norm"] == pytest.approx((1.0 + res["tasks"]["mixed"]["acc_norm"]) / 2)
    # mixed: half right; its items resampled give a spread; the same seed, the same answer
    assert res["macro_stderr"] > 0 and "not model noise" in res["macro_stderr_kind"]
    assert score(model, sp, suite, torch.device("cpu"))["macro_stderr"] == res["macro_stderr"]
