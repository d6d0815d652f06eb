#!/usr/bin/env python3
"""Fetch WikiText-2: same as `pax data wikitext` (see --help)."""

import sys

import _bootstrap  # noqa: F401

from pax.cli import app

if __name__ == "__main__":
    app(["data", "wikitext", *sys.argv[1:]], prog_name="download_wikitext.py")
