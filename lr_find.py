#!/usr/bin/env python3
"""LR range test: same as `pax lr-find` (see --help)."""

import sys

from pax.cli import app

if __name__ == "__main__":
    app(["lr-find", *sys.argv[1:]], prog_name="lr_find.py")
