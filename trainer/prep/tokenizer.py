"""SentencePiece tokenizer + flat uint16 token files for the trainer's memory map.

Each line of a split is encoded on its own and followed by the `<nl>` token, so line breaks are
real tokens and word-level perplexity with the WikiText convention (one end-of-line per line) is
computable. Ids are fixed: pad 0, unk 1, bos 2, eos 3, <nl> 4, and 5 is the literal `<unk>` that
WikiText v1 uses for rare words (a user-defined symbol, not the tokenizer's own unknown).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from trainer.prep.fetch import atomic_write_text, sha256_file
from trainer.prep.wikitext import SPLITS, load_manifest

PAD_ID, UNK_ID, BOS_ID, EOS_ID, NL_ID, WIKI_UNK_ID = 0, 1, 2, 3, 4, 5
NL_PIECE = "<nl>"
SP_UNK_PIECE = "<sp_unk>"  # the tokenizer's own unknown; "<unk>" belongs to WikiText
USER_SYMBOLS = [NL_PIECE, "<unk>"]
MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when encoding or trainer arguments change meaning


def trainer_args(vocab_size: int, model_type: str, character_coverage: float) -> dict:
    return dict(
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        unk_piece=SP_UNK_PIECE,
        user_defined_symbols=USER_SYMBOLS,
        byte_fallback=True,  # no text is ever unknown: rare characters become bytes
        normalization_rule_name="identity",  # keep the corpus' characters as they are
        split_digits=True,
        max_sentence_length=1 << 16,  # WikiText paragraphs run past the 4 KiB default
        input_sentence_size=0,
        shuffle_input_sentence=False,  # all lines, in file order
        num_threads=1,  # multi-threaded training is not byte-reproducible
        minloglevel=2,
    )


def tokenized_dir(root: Path, vocab_size: int) -> Path:
    return Path(root) / f"sp{vocab_size}"


def _cache_key(data_manifest: dict, args: dict) -> str:
    payload = {
        "format": FORMAT_VERSION,
        "args": args,
        "splits": {s: data_manifest["splits"][s]["sha256"] for s in SPLITS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_lines(path: Path) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def encode_lines(sp, lines: list[str]) -> np.ndarray:
    """Token ids of `lines`, each followed by <nl>, as one flat uint16 array."""
    pieces = sp.encode(lines, num_threads=os.cpu_count() or 1)
    total = sum(len(p) for p in pieces) + len(pieces)
    out = np.empty(total, dtype=np.uint16)
    i = 0
    for p in pieces:
        out[i : i + len(p)] = p
        i += len(p)
        out[i] = NL_ID
        i += 1
    return out


def build_tokenizer(
    input_dir: Path,
    vocab_size: int,
    output_root: Path,
    *,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    reports_dir: Path | None = Path("reports/data"),
    force: bool = False,
) -> dict:
    """Train SentencePiece on train.txt, encode every split; cached by hash of (corpus, args)."""
    import sentencepiece as spm

    if not 64 <= vocab_size <= 65_535:
        raise ValueError(f"vocab_size={vocab_size}: must be in [64, 65535] (uint16 token files)")
    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type={model_type!r}: must be 'bpe' or 'unigram'")
    input_dir = Path(input_dir)
    data_manifest = load_manifest(input_dir)
    args = trainer_args(vocab_size, model_type, character_coverage)
    key = _cache_key(data_manifest, args)
    out = tokenized_dir(output_root, vocab_size)
    if not force and (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text())
        if old.get("cache_key") == key and all((out / f"{s}.bin").is_file() for s in SPLITS):
            return old

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        train_lines = [ln for ln in read_lines(input_dir / "train.txt") if ln.strip()]
        model = io.BytesIO()
        try:
            # From an iterator into memory: no file path ends up inside the .model, so the same
            # corpus and arguments give the same bytes wherever the output lives.
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(train_lines), model_writer=model, **args
            )
        except RuntimeError as e:  # SentencePiece reports bad sizes as INTERNAL errors
            raise ValueError(
                f"vocab_size={vocab_size} does not fit this corpus: {str(e).split('] ')[-1]}"
            ) from None
        (tmp / "tokenizer.model").write_bytes(model.getvalue())
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "tokenizer.model"))
        if sp.piece_to_id(NL_PIECE) != NL_ID or sp.piece_to_id("<unk>") != WIKI_UNK_ID:
            raise RuntimeError("SentencePiece did not assign the fixed special ids")
        splits = {}
        lengths = None
        for split in SPLITS:
            lines = read_lines(input_dir / f"{split}.txt")
            ids = encode_lines(sp, lines)
            ids.tofile(tmp / f"{split}.bin")
            stats = data_manifest["splits"][split]
            splits[split] = {
                "tokens": int(ids.size),
                "lines": stats["lines"],
                "words": stats["words"],
                "word_level_tokens": stats["word_level_tokens"],
                "bytes": stats["bytes"],
                "tokens_per_word": ids.size / max(1, stats["words"]),
                "sha256": sha256_file(tmp / f"{split}.bin"),
            }
            if split == "train":
                lengths = [len(p) for p in sp.encode([ln for ln in lines if ln.strip()])]
        manifest = {
            "format_version": FORMAT_VERSION,
            "cache_key": key,
            "tokenizer": "tokenizer.model",
            "tokenizer_sha256": sha256_file(tmp / "tokenizer.model"),
            "vocab_size": sp.get_piece_size(),
            "model_type": model_type,
            "special_ids": {
                "pad": PAD_ID,
                "unk": UNK_ID,
                "bos": BOS_ID,
                "eos": EOS_ID,
                "nl": NL_ID,
                "wikitext_unk": WIKI_UNK_ID,
            },
            "dtype": "uint16",
            "line_break_token": NL_PIECE,
            "sample": bool(data_manifest.get("sample")),
            "data_manifest_sha256": sha256_file(input_dir / "DATASET_MANIFEST.json"),
            "data_dir": str(input_dir),
            "splits": splits,
            "args": {k: v for k, v in args.items() if k != "minloglevel"},
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)  # the whole folder appears at once
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if reports_dir is not None and lengths:
        length_histogram(lengths, sp, Path(reports_dir) / "length_hist.png", manifest)
    return manifest


def length_histogram(lengths: list[int], sp, path: Path, manifest: dict) -> Path:
    """Sanity plot: tokens per line, and characters per vocabulary piece."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    piece_chars = [
        len(sp.id_to_piece(i).replace("\u2581", ""))
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i))
    ]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.hist(lengths, bins=60, color="#3b6ea8")
    a.set(xlabel="tokens per non-empty line (train)", ylabel="lines", yscale="log")
    b.hist(piece_chars, bins=range(0, max(piece_chars) + 2), color="#c0504d")
    b.set(xlabel="characters per vocabulary piece", ylabel="pieces")
    title = f"SentencePiece {manifest['model_type']} V={manifest['vocab_size']}"
    if manifest["sample"]:
        title += "  [SAMPLE data, not WikiText-2 train]"
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_tokenizer(tok_dir: Path):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(Path(tok_dir) / "tokenizer.model"))


def load_tokens(tok_dir: Path, split: str) -> np.ndarray:
    """Memory-mapped token ids of one split."""
    path = Path(tok_dir) / f"{split}.bin"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `pax tokenize --input data/wikitext-2 --vocab-size N "
            "--output data/lm_tokenized` first"
        )
    return np.memmap(path, dtype=np.uint16, mode="r")
