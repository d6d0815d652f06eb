"""A count-based reference point: an interpolated Kneser-Ney trigram model over words.

Every report places the neural models beside it, computed on the same splits: a neural model
worse than it is flagged. Word level with the WikiText convention (the words of each line plus
one end-of-line), so its perplexity is the word-level PPL the trainer reports.

Interpolated Kneser-Ney (Chen & Goodman 1998, section 3) with one absolute discount D = 0.75
per order: p(w | u v) = max(c(u v w) - D, 0) / c(u v) + D N1+(u v .) / c(u v) * p(w | v),
where the lower orders use continuation counts (how many distinct words precede w), and the
unigram level is interpolated with a uniform distribution over the vocabulary plus one unseen
word, so a word never seen in training still gets a probability. A short implementation:
nltk's is pure Python per n-gram and takes minutes on WikiText-2, and KenLM's builder is a
separate binary that does not install from pip.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

DISCOUNT = 0.75
EOL = "</s>"  # the end-of-line token of the WikiText word-level convention
BOS = "<s>"


def words(text: str) -> list[str]:
    """Each non-empty line's words then an end-of-line, as the word-level PPL counts them."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            out += line.split()
        out.append(EOL)
    return out


class KneserNey:
    """An interpolated Kneser-Ney trigram model trained on a word list."""

    def __init__(self, train: list[str], discount: float = DISCOUNT):
        self.d = discount
        seq = [BOS, BOS, *train]
        tri = Counter(zip(seq, seq[1:], seq[2:], strict=False))
        self.tri = tri
        self.ctx2 = Counter()  # c(u v .)
        self.ctx2_types = Counter()  # N1+(u v .)
        bigram_types = set()
        for (u, v, _w), c in tri.items():
            self.ctx2[(u, v)] += c
            self.ctx2_types[(u, v)] += 1
            bigram_types.add((v, _w))
        # continuation counts for the bigram level: N1+(. v w)
        self.cont2 = Counter()
        for _u, v, w in tri:
            self.cont2[(v, w)] += 1
        self.cont2_ctx = Counter()  # sum over w of N1+(. v w)
        self.cont2_ctx_types = Counter()  # N1+(v .) among continuation bigrams
        for (v, _w), c in self.cont2.items():
            self.cont2_ctx[v] += c
            self.cont2_ctx_types[v] += 1
        # continuation counts for the unigram level: N1+(. w)
        self.cont1 = Counter(w for _v, w in bigram_types)
        self.cont1_total = sum(self.cont1.values())
        self.vocab = {w for w in train} | {EOL}
        self.uniform = 1.0 / (len(self.vocab) + 1)  # +1: any word unseen in training

    def p_unigram(self, w: str) -> float:
        lam = self.d * len(self.cont1) / self.cont1_total
        return max(self.cont1.get(w, 0) - self.d, 0) / self.cont1_total + lam * self.uniform

    def p_bigram(self, v: str, w: str) -> float:
        total = self.cont2_ctx.get(v, 0)
        if not total:
            return self.p_unigram(w)
        lam = self.d * self.cont2_ctx_types[v] / total
        return max(self.cont2.get((v, w), 0) - self.d, 0) / total + lam * self.p_unigram(w)

    def p(self, u: str, v: str, w: str) -> float:
        total = self.ctx2.get((u, v), 0)
        if not total:
            return self.p_bigram(v, w)
        lam = self.d * self.ctx2_types[(u, v)] / total
        return max(self.tri.get((u, v, w), 0) - self.d, 0) / total + lam * self.p_bigram(v, w)

    def perplexity(self, seq: list[str]) -> float:
        """exp(mean NLL per word), every word (end-of-lines included) predicted once."""
        padded = [BOS, BOS, *seq]
        nll = 0.0
        for i in range(2, len(padded)):
            nll -= math.log(self.p(padded[i - 2], padded[i - 1], padded[i]))
        return math.exp(nll / max(1, len(seq)))


def baseline(data_dir: Path) -> dict:
    """Dev and test word PPL of a KN trigram trained on train.txt of a `pax data wikitext`
    folder (sample data stays sample: the manifest says so, and so does this)."""
    import json

    data_dir = Path(data_dir)
    manifest = json.loads((data_dir / "DATASET_MANIFEST.json").read_text())
    lm = KneserNey(words((data_dir / "train.txt").read_text(encoding="utf-8")))
    out = {
        "model": "interpolated Kneser-Ney word trigram (D=0.75)",
        "sample": bool(manifest.get("sample")),
        "vocab": len(lm.vocab),
    }
    for split, key in (("valid", "dev"), ("test", "test")):
        out[f"{key}_word_ppl"] = lm.perplexity(words((data_dir / f"{split}.txt").read_text()))
    return out


# Published anchors on the real WikiText-2 (word level, v1): for scale, never for sample data.
LITERATURE = [
    {"model": "AWD-LSTM (Merity et al. 2018)", "params": 33_000_000, "dev": 68.6, "test": 65.8},
]


def data_dir_of(config: dict) -> Path | None:
    """The `pax data wikitext` folder a run's tokenization was made from, if it is here."""
    import json

    model, data = config.get("model") or {}, config.get("data") or {}
    manifest = Path(data.get("tokenized_dir", "data/lm_tokenized"))
    manifest = manifest / f"sp{model.get('vocab_size')}" / "manifest.json"
    if not manifest.is_file():
        return None
    found = Path(json.loads(manifest.read_text()).get("data_dir", ""))
    return found if (found / "train.txt").is_file() else None


def cached_baseline(data_dir: Path) -> dict:
    """`baseline`, cached beside the data (ngram_kn3.json) until the data manifest changes."""
    import hashlib
    import json

    data_dir = Path(data_dir)
    key = hashlib.sha256((data_dir / "DATASET_MANIFEST.json").read_bytes()).hexdigest()
    cache = data_dir / "ngram_kn3.json"
    if cache.is_file():
        doc = json.loads(cache.read_text())
        if doc.get("manifest_sha256") == key:
            return doc
    doc = {**baseline(data_dir), "manifest_sha256": key}
    from trainer.prep.fetch import atomic_write_text

    atomic_write_text(cache, json.dumps(doc, indent=2))  # a service may write two at once
    return doc
