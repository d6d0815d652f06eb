#!/usr/bin/env python3
"""Train the SentencePiece tokenizer and encode the splits: same as `pax tokenize`."""

import sys

import _bootstrap  # noqa: F401

from pax.cli import app

if __name__ == "__main__":
    app(["tokenize", *sys.argv[1:]], prog_name="preprocess_lm.py")
