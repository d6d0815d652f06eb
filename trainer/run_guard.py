"""What guards a run directory while it trains: one process at a time (an flock), and a clean
stop on SIGTERM/SIGINT (finish the step, checkpoint, exit 75)."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path


class RunLocked(RuntimeError):
    pass


class RunLock:
    """One process per run directory (an flock, released by the kernel even on SIGKILL)."""

    def __init__(self, run_dir: Path, wait_s: float = 0.0):
        self.path = Path(run_dir) / ".lock"
        self.wait_s = wait_s  # a relaunch may briefly overlap the previous attempt's exit

    def __enter__(self):
        self.f = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
            self.f.seek(0)
            holder = self.f.read().strip() or "another process"
            self.f.close()
            raise RunLocked(
                f"{self.path.parent} is being trained by {holder}; wait for it, or "
                "give this run another --run-dir"
            ) from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"pid {os.getpid()}")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


class StopSignal:
    """SIGTERM (spot preemption) / SIGINT: finish the step, checkpoint, exit 75."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
