"""SmallBench's references: the untrained band (issue 28: untrained models score far from 0.5,
and spread widely), the unigram model, and the cache they share per tokenizer and shape."""

import shutil

import torch

from tests.helpers import tiny_raw
from trainer.config import validate
from trainer.evaluation import smallbench_reference as ref
from trainer.prep.tokenizer import load_tokenizer

SUITE = {
    "agreement": [
        {"good": "the river flows into the sea .", "bad": "the river flow into the sea .",
         "field": "morphology"},
        {"good": "the cat sat on the mat .", "bad": "the cat sit on the mat .",
         "field": "morphology"},
        {"good": "a man was seen .", "bad": "a man were seen .", "field": "morphology"},
    ],
    "order": [
        {"good": "he saw the film .", "bad": "he the film saw .", "field": "syntax"},
        {"good": "she reads a book .", "bad": "she a book reads .", "field": "syntax"},
    ],
}  # fmt: skip


def _cfg(tok_root):
    return validate(tiny_raw(tok_root))


def test_the_untrained_band_spreads_is_cached_and_leaves_the_rng_alone(tokenized_dir, tmp_path):
    tok = tmp_path / tokenized_dir.name
    shutil.copytree(tokenized_dir, tok)
    sp, cfg = load_tokenizer(tok), _cfg(tmp_path)
    rng = torch.get_rng_state()
    first = ref.references(cfg, tok, sp, SUITE, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)  # the run's own stream is untouched
    band = first["untrained"]
    assert first["cached"] is False and band["inits"] == ref.INITS
    assert len(band["macro"]["values"]) == ref.INITS
    m = band["macro"]
    assert m["min"] <= m["mean"] <= m["max"]
    assert m["band_low"] == m["mean"] - 2 * m["sd"] and m["band_high"] == m["mean"] + 2 * m["sd"]
    assert set(band["tasks"]) == set(SUITE)
    # different inits prefer different sentences: a band, not a point at 0.5
    assert len({round(v, 6) for v in m["values"]}) > 1
    assert (tok / ref.CACHE).is_file()
    again = ref.references(cfg, tok, sp, SUITE, torch.device("cpu"))
    assert again["cached"] is True and again["untrained"] == band
    # another shape on the same tokenizer is its own entry
    bigger = {**tiny_raw(tmp_path)["model"], "total_params": 100_000}
    other = validate(tiny_raw(tmp_path, model=bigger))
    assert ref.references(other, tok, sp, SUITE, torch.device("cpu"))["cached"] is False


def test_unigram_prefers_frequent_tokens_and_counts_ties_half(tokenized_dir):
    sp = load_tokenizer(tokenized_dir)
    suite = {
        "freq": [{"good": "the the the .", "bad": "zqxv jjkw qqzz .", "field": "x"}],
        "tie": [{"good": "the river .", "bad": "the river .", "field": "x"}],
    }
    out = ref.unigram(tokenized_dir, sp, suite)
    assert out["tasks"] == {"freq": 1.0, "tie": 0.5}
    assert out["macro_acc"] == 0.75


def test_a_score_is_placed_against_the_band():
    band = {"macro": {"mean": 0.535, "sd": 0.0425}}  # the band 0.45 to 0.62
    assert ref.run_against_band(0.70, band) == "above"
    assert ref.run_against_band(0.568, band) == "inside"  # the example finalists' scores
    assert ref.run_against_band(0.40, band) == "below"
    assert ref.run_against_band(None, band) is None and ref.run_against_band(0.7, None) is None
