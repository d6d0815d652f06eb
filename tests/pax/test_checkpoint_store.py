"""A worker's checkpoint store (`pax worker --checkpoint-url`): the latest checkpoint and
best.pt both travel (issue 27: best.pt did not, so a run resumed on another worker lost the
best dev model that `final_model: best` exports). best.pt is replaced in place at each better
evaluation: a changed one is sent again, an unchanged one is not. Real files, a folder store."""

import os

from pax.worker import CheckpointStore


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_best_travels_with_the_latest_checkpoint(tmp_path):
    a = tmp_path / "worker-a" / "run"
    ck = a / "checkpoints"
    write(ck / "step_25.pt", b"weights-25")
    write(ck / "step_25.json", b'{"step": 25}')
    write(ck / "best.pt", b"best-at-20")
    store = CheckpointStore(str(tmp_path / "store"))
    sent: set[str] = set()
    store.push(7, a, sent)
    remote = tmp_path / "store" / "runs" / "7" / "checkpoints"
    assert (remote / "best.pt").read_bytes() == b"best-at-20"
    assert not (remote / "best.pt.part").exists()

    (remote / "best.pt").write_bytes(b"tampered")  # an unchanged best.pt is not sent again
    store.push(7, a, sent)
    assert (remote / "best.pt").read_bytes() == b"tampered"
    write(ck / "best.pt", b"best-at-25!")  # a better evaluation replaced it
    st = (ck / "best.pt").stat()
    os.utime(ck / "best.pt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    store.push(7, a, sent)
    assert (remote / "best.pt").read_bytes() == b"best-at-25!"

    b = tmp_path / "worker-b" / "run"
    assert store.fetch(7, b) == "step_25"
    got = b / "checkpoints"
    assert (got / "step_25.pt").read_bytes() == b"weights-25"
    assert (got / "best.pt").read_bytes() == b"best-at-25!"


def test_no_checkpoint_yet_fetches_nothing(tmp_path):
    store = CheckpointStore(str(tmp_path / "store"))
    write(tmp_path / "store" / "runs" / "7" / "checkpoints" / "best.pt", b"stale")
    assert store.fetch(7, tmp_path / "b") is None
    assert not (tmp_path / "b" / "checkpoints" / "best.pt").exists()  # no step to resume from
