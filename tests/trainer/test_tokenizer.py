import json
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from trainer.prep.tokenizer import (
    BOS_ID,
    EOS_ID,
    NL_ID,
    PAD_ID,
    UNK_ID,
    WIKI_UNK_ID,
    build_tokenizer,
    load_tokenizer,
    load_tokens,
    tokenized_dir,
)
from trainer.prep.wikitext import download_wikitext


def test_fixed_special_ids(tokenized_dir):
    sp = load_tokenizer(tokenized_dir)
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert sp.piece_to_id("<nl>") == NL_ID
    assert sp.piece_to_id("<unk>") == WIKI_UNK_ID
    # WikiText's literal <unk> is one user-defined piece, not the tokenizer's unknown
    ids = sp.encode("the <unk> river")
    assert WIKI_UNK_ID in ids and UNK_ID not in ids


def test_line_breaks_are_tokens(tokenized_dir, corpus_dir):
    manifest = json.loads((tokenized_dir / "manifest.json").read_text())
    for split in ("train", "valid", "test"):
        ids = load_tokens(tokenized_dir, split)
        assert ids.dtype == np.uint16 and ids.size == manifest["splits"][split]["tokens"]
        lines = (corpus_dir / f"{split}.txt").read_text().count("\n")
        assert int((ids == NL_ID).sum()) == lines == manifest["splits"][split]["lines"]
        assert ids[-1] == NL_ID


def test_roundtrip_of_a_line(tokenized_dir, corpus_dir):
    sp = load_tokenizer(tokenized_dir)
    ids = np.asarray(load_tokens(tokenized_dir, "valid"))
    first_nl = [i for i in np.flatnonzero(ids == NL_ID)][:3]
    line = (corpus_dir / "valid.txt").read_text().split("\n")[1]
    decoded = sp.decode(ids[first_nl[0] + 1 : first_nl[1]].tolist())
    assert decoded == line.strip()


def test_deterministic_and_cached(corpus_dir, tmp_path):
    a = build_tokenizer(corpus_dir, 400, tmp_path / "a", reports_dir=tmp_path / "rep")
    b = build_tokenizer(corpus_dir, 400, tmp_path / "b", reports_dir=None)
    da, db = tokenized_dir(tmp_path / "a", 400), tokenized_dir(tmp_path / "b", 400)
    assert (da / "tokenizer.model").read_bytes() == (db / "tokenizer.model").read_bytes()
    for split in ("train", "valid", "test"):
        assert (da / f"{split}.bin").read_bytes() == (db / f"{split}.bin").read_bytes()
    assert a["tokenizer_sha256"] == b["tokenizer_sha256"] and a["cache_key"] == b["cache_key"]
    assert (tmp_path / "rep" / "length_hist.png").stat().st_size > 5000
    # second call: the cache answers, nothing is retrained or rewritten
    mtime = (da / "tokenizer.model").stat().st_mtime_ns
    t0 = time.perf_counter()
    again = build_tokenizer(corpus_dir, 400, tmp_path / "a", reports_dir=None)
    assert time.perf_counter() - t0 < 0.5
    assert again == a and (da / "tokenizer.model").stat().st_mtime_ns == mtime
    # different arguments, different key
    c = build_tokenizer(corpus_dir, 400, tmp_path / "a", model_type="unigram", reports_dir=None)
    assert c["cache_key"] != a["cache_key"]


def test_manifest_fields(tokenized_dir):
    m = json.loads((tokenized_dir / "manifest.json").read_text())
    assert m["vocab_size"] == 512 and m["sample"] is False and len(m["tokenizer_sha256"]) == 64
    assert m["splits"]["train"]["tokens_per_word"] > 1.0
    assert len(m["data_manifest_sha256"]) == 64


def test_bad_vocab_size_names_the_field(corpus_dir, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(corpus_dir, 70_000, tmp_path)


def test_vocab_too_small_for_the_characters_is_a_clear_error(corpus_dir, tmp_path):
    with pytest.raises(ValueError, match="vocab_size=100 does not fit"):
        build_tokenizer(corpus_dir, 100, tmp_path)


def test_missing_input_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_wikitext.py"):
        build_tokenizer(tmp_path / "nope", 512, tmp_path / "out")


def test_preprocess_script_runs_as_written(corpus_dir, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "preprocess_lm.py"),
            "--input",
            str(corpus_dir),
            "--vocab_size",
            "400",
            "--output",
            "data/lm_tokenized",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])["output"]
    assert (tmp_path / out / "train.bin").is_file()
    assert (tmp_path / "reports" / "data" / "length_hist.png").is_file()


@pytest.mark.mirror
@pytest.mark.parametrize("vocab", [8000, 16000])
def test_real_mirror_vocab_sizes(real_mirror, tmp_path, vocab):
    data = tmp_path / "wikitext-2"
    download_wikitext(data, mirror=str(real_mirror))
    m = build_tokenizer(data, vocab, tmp_path / "tok", reports_dir=None)
    assert m["vocab_size"] == vocab and m["sample"] is True
    ids = load_tokens(tokenized_dir(tmp_path / "tok", vocab), "train")
    assert int(ids.max()) < vocab
    assert int((ids == NL_ID).sum()) == 3760
