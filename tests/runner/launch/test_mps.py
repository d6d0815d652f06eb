"""NVIDIA MPS for packed runs (issue 29): without it, 8 runs on one H200 reached 2.34x one run's
tokens/s, since kernels of different processes time-share the GPU. No GPU is here: the daemon's
absence is real (the service says so and goes on); its start, find and stop are checked against
a stand-in for `nvidia-cuda-mps-control` that does what the real one does to its pipe folder."""

import os
import stat

import pytest

from runner.launch.mps import BINARY, Mps, for_packed_runs
from tests.runner.conftest import in_process

FAKE = """#!/bin/sh
# stand-in for NVIDIA's control binary: -d starts a "daemon" (its control pipe appears), a
# command on stdin is answered while the pipe exists; every call is logged
echo "$* stdin=$(cat 2>/dev/null | tr '\\n' ' ') pipe=$CUDA_MPS_PIPE_DIRECTORY" >> "$MPS_CALLS"
if [ "$1" = "-d" ]; then
  [ -n "$MPS_FAIL" ] && { echo "cannot start: $MPS_FAIL" >&2; exit 1; }
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"; exit 0
fi
[ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ] || exit 1
tail -1 "$MPS_CALLS" | grep -q quit && rm "$CUDA_MPS_PIPE_DIRECTORY/control"
exit 0
"""


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / BINARY
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPS_CALLS", str(calls))
    return calls


@pytest.mark.parametrize(
    "gpus,slots,enabled,other,why",
    [
        (1, 1, True, False, "one trainer per GPU"),
        (0, 4, True, False, "one trainer per GPU"),
        (1, 4, False, False, "turned off"),
        (1, 4, True, True, "PAX_TRAINER_USER"),
    ],
)
def test_mps_is_wanted_only_when_trainers_share_a_gpu(tmp_path, gpus, slots, enabled, other, why):
    m = for_packed_runs(tmp_path, gpus=gpus, slots=slots, enabled=enabled, other_user=other)
    assert not m.wanted and m.start()["state"] == "off" and why in m.state["why"]
    assert m.trainer_env() == {}
    assert for_packed_runs(tmp_path, gpus=1, slots=4, enabled=True, other_user=False).wanted


def test_absent_daemon_is_said_and_runs_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-cuda-mps-control anywhere
    m = Mps(tmp_path / "mps", wanted=True)
    assert m.start()["state"] == "absent" and BINARY in m.state["why"]
    assert m.trainer_env() == {}
    m.stop()  # nothing started: nothing to stop


def test_started_found_and_stopped_with_its_folders_under_the_runs_root(tmp_path, fake_mps):
    folder = tmp_path / "runs" / "mps"
    first = Mps(folder, wanted=True)
    assert first.start()["state"] == "running"
    assert (folder / "pipe" / "control").exists() and (folder / "log").is_dir()
    env = first.trainer_env()
    assert env == {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"),
                   "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}  # fmt: skip
    # a second service or worker on the same folder finds it, and leaves it running on exit
    second = Mps(folder, wanted=True)
    assert second.start()["state"] == "found" and second.trainer_env() == env
    second.stop()
    assert "quit" not in fake_mps.read_text()
    first.stop()
    assert first.state["state"] == "stopped" and first.trainer_env() == {}
    assert fake_mps.read_text().splitlines()[-1].startswith(" stdin=quit")
    assert not (folder / "pipe" / "control").exists()


def test_a_daemon_that_fails_to_start_is_reported_with_its_message(tmp_path, fake_mps, monkeypatch):
    monkeypatch.setenv("MPS_FAIL", "compute mode prohibited")
    m = Mps(tmp_path / "mps", wanted=True)
    assert m.start()["state"] == "failed"
    assert "compute mode prohibited" in m.state["why"] and m.trainer_env() == {}


def test_healthz_says_whether_mps_serves_packed_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))  # no daemon binary here
    with in_process(tmp_path, gpus=1, gpu_slots=4) as svc:
        mps = svc.http.get("/healthz").json()["mps"]
    assert mps["state"] == "absent" and BINARY in mps["why"]
    with in_process(tmp_path / "off", gpus=1, gpu_slots=4, mps=False) as svc:
        mps = svc.http.get("/healthz").json()["mps"]
    assert mps["state"] == "off" and "turned off" in mps["why"]
    with in_process(tmp_path / "one", gpus=1, gpu_slots=1) as svc:
        assert svc.http.get("/healthz").json()["mps"]["state"] == "off"


def test_a_worker_whose_slots_share_a_gpu_starts_mps_and_stops_it_on_exit(tmp_path, fake_mps):
    from pax.client import free_port
    from pax.worker import Worker

    said = []
    w = Worker(
        f"http://127.0.0.1:{free_port()}", "t" * 32, runs_root=tmp_path / "wr", poll_s=0.1,
        idle_exit_s=0.5, slots=2, gpus=1, log=said.append,
    )  # fmt: skip
    w.run()  # nobody answers: it leaves after idle_exit_s
    calls = fake_mps.read_text().splitlines()
    assert calls[0].startswith("-d") and str(tmp_path / "wr" / "mps" / "pipe") in calls[0]
    assert calls[-1].startswith(" stdin=quit")
    assert any("MPS running" in m for m in said)
    off = Worker("http://127.0.0.1:9", "t" * 32, runs_root=tmp_path / "w2", poll_s=0.1,
                 idle_exit_s=0.3, slots=2, gpus=1, mps=False, log=said.append)  # fmt: skip
    off.run()
    assert off.mps.state["state"] == "off" and len(fake_mps.read_text().splitlines()) == 2
