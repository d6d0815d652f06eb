#!/usr/bin/env python3
"""Score a run's latest checkpoint on SmallBench: same as `pax eval --only smallbench`."""

import sys

from pax.cli import app

if __name__ == "__main__":
    app(["eval", "--only", "smallbench", *sys.argv[1:]], prog_name="eval_smallbench.py")
