#!/usr/bin/env python3
"""The study's entry point, e.g.
`python run_experiment.py --config configs/embed_ratio.yaml --exp emb35`.

Same as `pax train` (see --help): trains and evaluates in logs/<exp>/<run-id>/; rerunning the
same command resumes from the latest checkpoint.
"""

import sys

from pax.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="run_experiment.py")
