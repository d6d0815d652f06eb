import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_text_mirror
from trainer.prep import wikitext
from trainer.prep.fetch import FetchError
from trainer.prep.wikitext import MANIFEST, download_wikitext, split_stats


def test_download_over_http_parquet_layout(tmp_path, http_mirror):
    mirror = write_text_mirror(tmp_path / "mirror", "parquet")
    url = http_mirror(mirror)
    out = tmp_path / "out"
    m = download_wikitext(out, mirror=url)
    assert m["sample"] is False and m["layout"] == "parquet" and m["license"] == "CC BY-SA 3.0"
    for split in ("train", "valid", "test"):
        text = (out / f"{split}.txt").read_text()
        assert m["splits"][split] == {**split_stats(text), "sha256": m["splits"][split]["sha256"]}
        assert m["sources"][split][0]["url"].startswith(url)
    # blank lines come back as ' ' and every line ends with a newline, as in the original files
    train = (out / "train.txt").read_text().split("\n")
    assert train[0] == " " and train[1].startswith(" = ")
    assert json.loads((out / MANIFEST).read_text()) == m


def test_sample_layout_is_labelled_and_split_at_an_article(tmp_path):
    mirror = write_text_mirror(tmp_path / "mirror", "sample")
    m = download_wikitext(tmp_path / "out", mirror=str(mirror))
    assert m["sample"] is True and "SAMPLE" in m["note"]
    valid = (tmp_path / "out" / "valid.txt").read_text()
    test = (tmp_path / "out" / "test.txt").read_text()
    original = (mirror / "wikitext-2-sample" / "wiki.test.tokens").read_text()
    assert valid + test == original
    assert test.split("\n")[1].startswith(" = ") and not test.split("\n")[1].startswith(" = = ")
    assert (tmp_path / "out" / "train.txt").read_text() == (
        mirror / "wikitext-2-sample" / "wiki.valid.tokens"
    ).read_text()


def test_env_variable_selects_the_mirror(tmp_path, monkeypatch):
    mirror = write_text_mirror(tmp_path / "mirror", "text")
    monkeypatch.setenv("PAX_DATA_MIRROR", str(mirror))
    m = download_wikitext(tmp_path / "out")
    assert m["origin"] == "mirror" and m["layout"] == "text"


def test_corrupt_file_over_http_leaves_nothing_behind(tmp_path, http_mirror):
    mirror = write_text_mirror(tmp_path / "mirror", "parquet")
    bad = mirror / "wikitext-2-v1" / "test-00000-of-00001.parquet"
    bad.write_bytes(bad.read_bytes()[:-100])  # truncated
    with pytest.raises(FetchError, match="corrupt or truncated"):
        download_wikitext(tmp_path / "out", mirror=http_mirror(mirror))
    assert not (tmp_path / "out").exists()
    cached = list((tmp_path / "cache").rglob("*test-00000*"))
    assert cached == []


def test_corrupt_file_in_folder_mirror(tmp_path):
    mirror = write_text_mirror(tmp_path / "mirror", "sample")
    f = mirror / "wikitext-2-sample" / "wiki.valid.tokens"
    f.write_text(f.read_text() + "tampered\n")
    with pytest.raises(FetchError, match="does not match"):
        download_wikitext(tmp_path / "out", mirror=str(mirror))
    assert not (tmp_path / "out").exists()


def test_mirror_without_hashes_is_refused_with_the_fix(tmp_path):
    mirror = write_text_mirror(tmp_path / "mirror", "text")
    (mirror / "SHA256SUMS").unlink()
    with pytest.raises(FetchError, match="SHA256SUMS"):
        download_wikitext(tmp_path / "out", mirror=str(mirror))


def test_offline_without_mirror_says_how_to_point_at_one(tmp_path, monkeypatch):
    # The official source, made unreachable: a closed port on 127.0.0.1.
    monkeypatch.setattr(wikitext, "HF_TREE", "http://127.0.0.1:9/{revision}/{folder}")
    with pytest.raises(FetchError, match="PAX_DATA_MIRROR"):
        download_wikitext(tmp_path / "out")


def test_official_path_verifies_against_hub_hashes(tmp_path, http_mirror, monkeypatch):
    """The default (no mirror) path, with the hub replaced by a local server that speaks its
    tree API and resolve URLs."""
    hub = write_text_mirror(tmp_path / "hub", "parquet")
    listing = [
        {"type": "file", "path": line.split()[1], "lfs": {"oid": line.split()[0]}}
        for line in (hub / "SHA256SUMS").read_text().splitlines()
    ]
    (hub / "SHA256SUMS").unlink()
    api = hub / "api" / "main" / "wikitext-2-v1"
    api.parent.mkdir(parents=True)
    api.write_text(json.dumps(listing))
    base = http_mirror(hub)
    monkeypatch.setattr(wikitext, "HF_TREE", base + "/api/{revision}/{folder}")
    monkeypatch.setattr(wikitext, "HF_BASE", base)
    m = download_wikitext(tmp_path / "out")
    assert m["origin"] == "official" and m["sample"] is False


def test_second_call_keeps_current_output(tmp_path):
    mirror = write_text_mirror(tmp_path / "mirror", "sample")
    download_wikitext(tmp_path / "out", mirror=str(mirror))
    before = (tmp_path / "out" / "train.txt").stat().st_mtime_ns
    download_wikitext(tmp_path / "out", mirror=str(mirror))
    assert (tmp_path / "out" / "train.txt").stat().st_mtime_ns == before


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        download_wikitext(Path("x"), variant="v3")


def test_script_runs_as_written_against_a_local_http_mirror(tmp_path, http_mirror):
    mirror = write_text_mirror(tmp_path / "mirror", "sample")
    url = http_mirror(mirror)
    env = {"PATH": "/usr/bin:/bin", "PAX_CACHE_DIR": str(tmp_path / "c"), "PAX_DATA_MIRROR": url}
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "download_wikitext.py"),
            "--output",
            "data/wikitext-2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["sample"] is True
    assert (tmp_path / "data" / "wikitext-2" / "train.txt").is_file()


@pytest.mark.mirror
def test_real_mirror_gives_the_documented_counts(tmp_path, real_mirror):
    m = download_wikitext(tmp_path / "out", mirror=str(real_mirror))
    assert m["sample"] is True
    # the sample's train split is the official validation split, unmodified
    assert m["splits"]["train"]["word_level_tokens"] == 217_646
    assert m["splits"]["train"]["sha256"] == wikitext.KNOWN_SHA256["wiki.valid.tokens"]
    v, t = m["splits"]["valid"], m["splits"]["test"]
    assert v["word_level_tokens"] + t["word_level_tokens"] == 245_569
    assert v["lines"] + t["lines"] == 4358


def test_atomic_write_is_safe_across_threads(tmp_path):
    """Two threads of one process (a service's scheduler and a request, both writing a report
    that caches the n-gram baseline) once shared a temporary name: one's rename found the
    file gone. Every writer now has its own."""
    import threading

    from trainer.prep.fetch import atomic_write_text

    dst = tmp_path / "cache.json"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(i: int) -> None:
        start.wait()
        try:
            for n in range(200):
                atomic_write_text(dst, f"{i} {n}")
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and dst.read_text().endswith(" 199")
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]  # no leftovers
