#!/usr/bin/env python3
"""Launch runs or a sweep on spot GPUs through SkyPilot: same as `pax sky launch` (--help)."""

import sys

import _bootstrap  # noqa: F401

from pax.cli import app

if __name__ == "__main__":
    app(["sky", "launch", *sys.argv[1:]], prog_name="launch_spot.py")
