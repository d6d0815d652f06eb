"""A trainer the runner can't reach speaks through its run folder: closed part files, one per
flush (a bucket mount uploads a file once it is closed: the trainer once kept one file open for
the whole run, so nothing arrived while it trained), the heartbeat, and the stop file."""

import json
import time

from trainer.reporting.folder import FolderReporter


def train(step):
    return {"event": "train", "step": step, "tokens": 64 * step, "loss": 5.0 - step / 100}


def test_each_flush_is_a_closed_part_and_a_stop_file_is_heard(tmp_path):
    r = FolderReporter(tmp_path, flush_s=3600)
    r.log({"event": "start", "step": 0, "tokens": 0, "attempt": 2})  # flushes at once
    for step in range(1, 4):
        r.log(train(step))
    assert not list((tmp_path / "outbox").glob("*.jsonl"))  # buffered until the next flush
    r.flush()
    r.log(train(4))
    (tmp_path / "stop.json").write_text(json.dumps({"reason": "kill rule: trailed"}))
    assert r.stop_requested() is None  # read at a flush, not at every step
    r.close()
    parts = sorted((tmp_path / "outbox").glob("*.jsonl"))
    assert len(parts) == 2 and not list((tmp_path / "outbox").glob(".*"))  # no temp left
    steps = [json.loads(line)["step"] for p in parts for line in p.read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4]
    beat = json.loads((tmp_path / "heartbeat.json").read_text())
    assert beat["step"] == 4 and beat["attempt"] == 2 and beat["time"] <= time.time()
    assert r.stop_requested().reason == "kill rule: trailed"


def test_part_names_never_repeat_across_attempts(tmp_path):
    first = FolderReporter(tmp_path, flush_s=0)
    first.log(train(1))
    first.close()
    second = FolderReporter(tmp_path, flush_s=0)  # a resumed attempt, same folder
    second.log(train(1))
    second.close()
    assert len(list((tmp_path / "outbox").glob("*.jsonl"))) == 2
