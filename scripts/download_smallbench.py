#!/usr/bin/env python3
"""Fetch BLiMP and build the SmallBench suite: same as `pax data smallbench` (see --help)."""

import sys

import _bootstrap  # noqa: F401

from pax.cli import app

if __name__ == "__main__":
    app(["data", "smallbench", *sys.argv[1:]], prog_name="download_smallbench.py")
