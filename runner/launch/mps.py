"""NVIDIA MPS for packed runs. Without it, kernels of different processes time-share a GPU:
8 ranking runs on one H200 reached 2.34x one run's tokens/s, not the 4x their small kernels
leave room for. With several trainers per GPU, the local launcher and `pax worker` start the
MPS control daemon (or find one already serving the same pipe folder), with its pipe and log
folders under the runs root, give its folders to every trainer, and stop it on exit if they
started it. Where the daemon is absent or fails, runs go on without it and /healthz says why.
`PAX_MPS=0` (`pax worker --no-mps`) turns it off.

MPS serves clients of the user that started it: with PAX_TRAINER_USER, trainers run as another
user, and the daemon is not started (the reason says so)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BINARY = "nvidia-cuda-mps-control"
TIMEOUT_S = 20


class Mps:
    def __init__(self, folder: Path, *, wanted: bool, why_not: str | None = None):
        self.folder = Path(folder)
        self.pipe_dir = self.folder / "pipe"
        self.log_dir = self.folder / "log"
        self.wanted = wanted
        self.why_not = why_not
        self.started = False
        self.state = {"state": "off", "why": why_not or "not asked for"}

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir),
        }

    def _control(self, binary: str, stdin: str | None = None, *args: str):
        return subprocess.run(
            [binary, *args],
            input=stdin,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )

    def start(self) -> dict:
        """Find or start the daemon; the state /healthz shows ({state, why, pipe_dir})."""
        if not self.wanted:
            return self.state
        binary = shutil.which(BINARY)
        if binary is None:
            self.state = {"state": "absent", "why": f"{BINARY} is not on PATH: runs share the "
                          "GPU by time-slicing"}  # fmt: skip
            return self.state
        where = {"pipe_dir": str(self.pipe_dir), "log_dir": str(self.log_dir)}
        try:
            if (self.pipe_dir / "control").exists():
                probe = self._control(binary, "get_server_list\n")
                if probe.returncode == 0:
                    self.state = {"state": "found", "why": "a daemon already serves this pipe "
                                  "folder (left running on exit)", **where}  # fmt: skip
                    return self.state
            self.pipe_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = self._control(binary, None, "-d")
        except (OSError, subprocess.TimeoutExpired) as e:
            self.state = {"state": "failed", "why": f"{BINARY} -d: {e}", **where}
            return self.state
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip()[-300:]
            self.state = {"state": "failed", "why": f"{BINARY} -d exited {out.returncode}: "
                          f"{tail or 'no output'} (see {self.log_dir})", **where}  # fmt: skip
            return self.state
        self.started = True
        self.state = {"state": "running", "why": "started for packed runs", **where}
        return self.state

    def trainer_env(self) -> dict[str, str]:
        """What a trainer needs to reach the daemon (nothing when none serves)."""
        if self.state["state"] not in ("running", "found"):
            return {}
        return {
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir),
        }

    def stop(self) -> None:
        """Quit the daemon if this process started it (one found running is left alone)."""
        if not self.started:
            return
        binary = shutil.which(BINARY)
        try:
            if binary:
                self._control(binary, "quit\n")
        except (OSError, subprocess.TimeoutExpired):
            pass  # the daemon exits with the machine; nothing of the ledger depends on it
        self.started = False
        self.state = {**self.state, "state": "stopped", "why": "stopped on exit"}


def for_packed_runs(folder: Path, *, gpus: int, slots: int, enabled: bool, other_user: bool) -> Mps:
    """The MPS a host with `gpus` GPUs and `slots` trainers in all should run: wanted when
    trainers share a GPU, unless turned off or trainers run as another user."""
    if gpus <= 0 or slots <= gpus:
        return Mps(folder, wanted=False, why_not="one trainer per GPU: nothing to share")
    if not enabled:
        return Mps(folder, wanted=False, why_not="turned off (PAX_MPS=0 / --no-mps)")
    if other_user:
        return Mps(folder, wanted=False, why_not="trainers run as PAX_TRAINER_USER, and MPS "
                   "serves the user that started it")  # fmt: skip
    return Mps(folder, wanted=True)
