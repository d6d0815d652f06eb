#!/usr/bin/env python3
"""Aggregate run directories: same as `pax aggregate` (see --help).

scripts/aggregate_results.py --log_dir logs --output results_summary.csv
"""

import sys

import _bootstrap  # noqa: F401

from pax.cli import app

if __name__ == "__main__":
    app(["aggregate", *sys.argv[1:]], prog_name="aggregate_results.py")
