"""Lets `python scripts/<name>.py` run from a checkout whose package is not installed."""

import sys
from pathlib import Path

root = str(Path(__file__).resolve().parents[1])
if root not in sys.path:
    sys.path.insert(0, root)
