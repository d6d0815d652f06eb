"""Shared fixtures: a WikiText-shaped corpus made in tmp, a local HTTP mirror, the real mirror."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import random
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Captured before any test runs: the autouse fixture below hides the variable from tests.
REAL_MIRROR = os.environ.get("PAX_DATA_MIRROR")


def fake_wikitext(n_articles: int, seed: int) -> str:
    """Text in WikiText-2 v1's shape: ' = Title = ' headings, ' ' blank lines, space-separated
    tokens with <unk>, '@-@' and numbers; the words follow a Zipf law over a made-up lexicon."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    lexicon = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(3000)]
    weights = [1 / (i + 1) for i in range(len(lexicon))]
    lines = []
    for _ in range(n_articles):
        title = " ".join(w.capitalize() for w in rng.choices(lexicon, weights, k=2))
        lines += [" ", f" = {title} = ", " "]
        for _ in range(rng.randint(2, 5)):
            words = rng.choices(lexicon + ["<unk>", "@-@", "1", "the", ","], k=rng.randint(20, 90))
            lines.append(" " + " ".join(words) + " . ")
            lines.append(" ")
    return "\n".join(lines) + "\n"


def write_text_mirror(root: Path, layout: str = "sample", n_articles: int = 60) -> Path:
    """A mirror folder; layout 'sample' (valid+test only), 'text' or 'parquet' (hub layout).
    Carries a SHA256SUMS file, as a mirror of non-official copies must."""
    texts = {
        "train": fake_wikitext(n_articles * 3, 1),
        "valid": fake_wikitext(n_articles, 2),
        "test": fake_wikitext(n_articles, 3),
    }
    files: dict[str, bytes] = {}
    if layout == "sample":
        for split in ("valid", "test"):
            files[f"wikitext-2-sample/wiki.{split}.tokens"] = texts[split].encode()
    elif layout == "text":
        for split, text in texts.items():
            files[f"wikitext-2/wiki.{split}.tokens"] = text.encode()
    elif layout == "parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        hub = {"train": "train", "valid": "validation", "test": "test"}
        for split, text in texts.items():
            rows = ["" if ln == " " else ln + "\n" for ln in text.split("\n")[:-1]]
            buf = io.BytesIO()
            pq.write_table(pa.table({"text": rows}), buf)
            files[f"wikitext-2-v1/{hub[split]}-00000-of-00001.parquet"] = buf.getvalue()
    else:
        raise ValueError(layout)
    sums = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {rel}")
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_mirror():
    """Serve a folder on 127.0.0.1 (a real HTTP server); yields a function folder -> base URL."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's mirror or cache unless it asks for them."""
    monkeypatch.setenv("PAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PAX_DATA_MIRROR", raising=False)


@pytest.fixture
def real_mirror() -> Path:
    """The offline mirror (PAX_DATA_MIRROR or ../shared/data); skips when it is absent."""
    for c in (REAL_MIRROR, ROOT.parent / "shared" / "data"):
        if c and (Path(c) / "wikitext-2-sample" / "wiki.valid.tokens").is_file():
            return Path(c)
    pytest.skip("offline data mirror not found (set PAX_DATA_MIRROR or provide ../shared/data)")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A WikiText-shaped data folder (train/valid/test.txt + manifest), built once per session."""
    from trainer.prep.wikitext import download_wikitext

    mirror = write_text_mirror(tmp_path_factory.mktemp("mirror"), "text")
    out = tmp_path_factory.mktemp("data") / "wikitext-2"
    download_wikitext(out, mirror=str(mirror))
    return out


@pytest.fixture(scope="session")
def tokenized_dir(corpus_dir, tmp_path_factory) -> Path:
    """A small SentencePiece tokenizer (V=512) and token files over `corpus_dir`."""
    from trainer.prep.tokenizer import build_tokenizer
    from trainer.prep.tokenizer import tokenized_dir as tdir

    root = tmp_path_factory.mktemp("tok")
    build_tokenizer(corpus_dir, 512, root, reports_dir=None)
    return tdir(root, 512)


def write_config(path: Path, base: dict, experiments: dict | None = None) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"base": base, "experiments": experiments or {}}))
    return path
