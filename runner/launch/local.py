"""Local launcher: `pax train` as a subprocess in its own session, logging to the run dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from runner.launch.base import (
    ALIVE,
    EXITED,
    NOT_OURS,
    JobState,
    LaunchSpec,
    trainer_args,
    trainer_env,
)
from runner.ledger.attempts import Placement


class LocalLauncher:
    name = "local"
    kinds = ("local",)
    takes_unassigned = True
    tracks_processes = True  # alive() / exited() know its trainers

    def __init__(
        self, python: str = sys.executable, passthrough=(), place: Placement = Placement()
    ):
        self.python = python
        self.passthrough = tuple(passthrough)
        self.place = place  # the service's own GPU (PAX_ACCELERATOR), or the CPU
        self.procs: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def placement(self) -> Placement:
        return self.place

    def command(self, spec: LaunchSpec) -> list[str]:
        return [self.python, "-m", "pax.cli", *trainer_args(spec.config_path, spec.run_dir)]

    def start(self, spec: LaunchSpec) -> str:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(spec.run_dir / "train.log", "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== attempt {spec.attempt} ===\n".encode())
        log.flush()
        env = trainer_env(spec.env, self.passthrough)
        # its own session: a signal to the service's process group does not reach training,
        # and stop() can signal the trainer's whole group
        proc = subprocess.Popen(
            self.command(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        with self.lock:
            self.procs[str(proc.pid)] = proc
        return str(proc.pid)

    def observe(self, backend_ids: list[str]) -> dict[str, JobState]:
        return {b: self.poll(b) for b in backend_ids}

    def poll(self, backend_id: str) -> JobState:
        """The process's state; an exited one is reported once and forgotten."""
        with self.lock:
            proc = self.procs.get(backend_id)
        if proc is None:
            return NOT_OURS
        code = proc.poll()
        if code is None:
            return ALIVE
        with self.lock:
            self.procs.pop(backend_id, None)
        return JobState(EXITED, code=code)

    def stop(self, backend_id: str, grace_s: float) -> None:
        with self.lock:
            proc = self.procs.get(backend_id)
        pid = proc.pid if proc is not None else int(backend_id)

        def _stop():
            try:
                os.killpg(pid, signal.SIGTERM)
                os.killpg(pid, signal.SIGCONT)  # a stopped trainer must wake to checkpoint
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.time() + grace_s
            while time.time() < deadline:
                if proc is not None and proc.poll() is not None:
                    return
                if proc is None and not _alive(pid):
                    return
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

        threading.Thread(target=_stop, daemon=True, name=f"stop-{pid}").start()

    def alive(self) -> list[str]:
        with self.lock:
            return [b for b, p in self.procs.items() if p.poll() is None]

    def exited(self) -> list[str]:
        """Tracked processes that have exited (poll() reports and forgets them)."""
        with self.lock:
            return [b for b, p in self.procs.items() if p.poll() is not None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
