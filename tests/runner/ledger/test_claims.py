"""Claims across processes: a run is handed out once, whoever claims."""

import json
import os
import subprocess
import sys

import pytest

from runner.ledger.db import make_engine
from runner.ledger.runs import create_run
from tests.conftest import ROOT
from tests.helpers import tiny_raw

CLAIMER = """
import json, sys, threading
from runner.ledger.db import make_engine
from runner.ledger.lifecycle import claim_queued
from runner.ledger.runs import create_run
engine = make_engine(sys.argv[1])
got, lock = [], threading.Lock()
def work():
    while True:
        runs = claim_queued(engine, limit=1, launcher=sys.argv[2])
        if not runs:
            return
        with lock:
            got.append(runs[0][0].id)
threads = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(got))
"""


@pytest.mark.slow
def test_two_processes_never_claim_one_run_twice(tmp_path, tokenized_dir):
    from runner.ledger.db import upgrade
    from trainer.config import validate

    db = tmp_path / "pax.db"
    upgrade(db)
    engine = make_engine(db)
    cfg = validate(tiny_raw(tokenized_dir.parent))
    for _ in range(60):
        create_run(engine, cfg=cfg)
    engine.dispose()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(db), f"p{i}"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    claimed = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    together = claimed[0] + claimed[1]
    assert sorted(together) == list(range(1, 61))  # every run once: 0 double claims
